"""Typed errors. Each carries one user-facing sentence naming the field and the rule."""

from __future__ import annotations


class LaunchError(Exception):
    """Base class: `str(err)` is a complete sentence fit to show a user."""

    exit_code = 1


class NotFound(LaunchError):
    """An unknown project, job, alias, version, queue, item, run or agent."""


class ValidationError(LaunchError):
    """Input that breaks a rule; the message names the field and the rule."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ConflictError(LaunchError):
    """The operation does not fit the current state (e.g. cancelling a finished run)."""


class FencedOut(ConflictError):
    """An agent's name is now held by another process: this one must stop supervising."""


class RunTaken(ConflictError):
    """Another agent took the run over (it judged this one gone): this agent must let
    go of it, writing nothing more about it."""

    def __init__(self, run_id: str, owner: str | None, agent: str) -> None:
        super().__init__(
            f"run: {run_id} is now supervised by agent '{owner}', which took it over; "
            f"agent '{agent}' no longer supervises it.")
        self.run_id = run_id
        self.owner = owner


class StoreError(LaunchError):
    """The database is unusable: not ours, newer than this program, unreachable."""


class BackendError(LaunchError):
    """A target resource refused or failed an operation."""


class BuildError(LaunchError):
    """Turning a job version into something runnable failed."""
