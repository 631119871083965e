"""LaunchService: the one way into the core.

The TUI, the CLI, in-process and headless agents are all clients of this
facade. It is made of one part per thing it owns (core/facade/): the catalog,
queues and items, runs (the agents' dispatch port, listings and output), and
agents with the change feed; each method hands the call to the domain module
that owns it. Commands are transactional, every state change appends an event in
the same transaction, and `subscribe()` tails those events, so a client sees
changes made by other processes too.

What it returns to people (queues, jobs, items, runs, previews) shows secrets
masked (`redact`); what it returns to agents through their port (`claim_run`,
`claim`, `acknowledge`, `agent_runs`, `take_over_runs`, `set_run_state`) is
whole, since a job needs the real values. The domain modules always work on
the real values among themselves.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from launch_tui.core.facade.agents import AgentCommands
from launch_tui.core.facade.catalog import CatalogCommands
from launch_tui.core.facade.queues import QueueCommands
from launch_tui.core.facade.runs import RunCommands
from launch_tui.core.ids import new_run_id

if TYPE_CHECKING:
    from launch_tui.core.agents import AGENT_STALE_S
    from launch_tui.core.catalog import JobVersionResult
    from launch_tui.core.dispatch import ClaimResult
    from launch_tui.core.retention import PruneReport

__all__ = ["AGENT_STALE_S", "ClaimResult", "JobVersionResult", "LaunchService", "PruneReport",
           "new_run_id"]

# Names this module offers from the domain modules, imported when first asked for:
# a command that only lists (`items`, `runs`) never imports job snapshots, the
# dispatch path or retention (~20 ms of every CLI start).
_LAZY = {"AGENT_STALE_S": "agents", "ClaimResult": "dispatch",
         "JobVersionResult": "catalog", "PruneReport": "retention"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"launch_tui.core.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class LaunchService(CatalogCommands, QueueCommands, RunCommands, AgentCommands):
    """`LaunchService.open(store, home)`, then any command; `close()` (or `async with`)."""
