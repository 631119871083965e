"""Which of the agent's own environment variables a job may see.

A job's environment is an explicit set: the run's variables (WANDB_*,
LAUNCH_TUI_*), the queue's `env`, and from the agent's environment only the
names on an allow-list that the queue can extend (`inherit_env`). Never the
agent's whole environment: it may hold the store URL, database passwords and
cloud credentials that the job has no business reading.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping

# What a process needs to behave like one started from a login shell: where to
# find programs, who and where it is, its locale and its temporary directory.
DEFAULT_INHERIT: tuple[str, ...] = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TZ", "TMPDIR",
    "LANG", "LANGUAGE", "LC_*",
)

# Names no allow-list can let through: they carry the control plane's own access.
NEVER_INHERIT: tuple[str, ...] = ("LAUNCH_TUI_STORE", "PGPASSWORD", "PGPASSFILE")


def inherited(environ: Mapping[str, str], extra: Iterable[str] = ()) -> dict[str, str]:
    """The part of `environ` a job may inherit; `extra` adds names or glob patterns."""
    patterns = (*DEFAULT_INHERIT, *extra)
    return {
        name: value
        for name, value in environ.items()
        if any(fnmatch.fnmatchcase(name, p) for p in patterns)
        and not any(fnmatch.fnmatchcase(name, p) for p in NEVER_INHERIT)
    }


def without_control_plane(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` without the names that carry the control plane's access
    (NEVER_INHERIT): for the agent's own helper processes that run code a job
    brings along, such as pip building a job's requirements (a package's setup.py
    runs with pip's environment)."""
    return {
        name: value
        for name, value in environ.items()
        if not any(fnmatch.fnmatchcase(name, p) for p in NEVER_INHERIT)
    }
