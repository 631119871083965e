"""Where launch-tui keeps its data, and the few knobs a user may set in TOML.

`$LAUNCH_TUI_HOME/settings.toml` (all keys optional):

    store = "postgresql://…"              # default: sqlite file in the home dir; or, with
                                          # the keys below, `url` in a [store] table
    default_project = "default"
    snapshot_max_mb = 100
    [store]
    url = "postgresql://me@db.example/launch?sslmode=verify-full"  # as `store` above
    pool_size = 4         # reader threads, each with its own connection (plus one writer
                          # and, on PostgreSQL, one LISTEN connection per process)
    statement_timeout_s = 30  # PostgreSQL: cancel a statement after this long (0: no
                          # limit; unset: the server's, role's or URL's own setting)
    idle_in_transaction_timeout_s = 10  # PostgreSQL: end a session that has sat inside a
                          # transaction this long (a process stopped mid-write holds its
                          # row locks until then; 0: no limit)
    [agent]
    poll_interval_s = 3.0
    lease_s = 30.0
    stale_s = 30.0        # an agent silent this long is gone: its name is free, its runs
                          # are taken over by another agent of the queue
    [backends.docker]
    base_image = "python:3.11-slim"
    [backends.kubernetes]
    kubeconfig = "~/.kube/config"   # default: $KUBECONFIG, ~/.kube/config, or in a pod
                                    # its service account
    context = "prod"                # default: the file's current context (a queue's
                                    # `context` key wins)
    image_pull_grace_s = 300        # ErrImagePull/ImagePullBackOff this long fails the run
    registry = {username = "ci", password_env = "REGISTRY_TOKEN"}  # pushes and pulls
    [retention]           # what pruning deletes (agents in the background, `launch-tui gc`)
    events_days = 30      # state changes and agent log lines older than this
    notice_days = 1       # heartbeats and output notices (RunLogAppended, RunMetricsLogged):
                          # the bulk of the events, of no use once watchers have read them
    events_keep = 100000  # the newest events, kept whatever their age
    logs_days = 7         # log lines of runs that ended longer ago than this
    metrics_days = 30     # metric records of runs that ended longer ago than this
    agents_days = 30      # agents that have not heartbeaten for this long (and own no
                          # unfinished run) leave the agents list
    prune_every_minutes = 10  # how often each agent prunes (0: never; run `launch-tui gc`)
    [tui]
    notify_finished = true    # a notice when a run finishes (failures always raise one)
    bell_on_failure = false   # ring the terminal bell when a run fails
    [keys]                    # the app's keys, by name (`?` shows each name): key names
    enqueue = "E"             # joined by commas, e.g. cancel_items = "x,delete"

Whatever the settings say, events younger than a day are never deleted (a
subscriber that fell behind still gets everything newer), nor output of a run
that ended less than an hour ago, nor a run's output while it runs.

Why these defaults: a busy team (20 users and agents, 2,000 runs a day, 1,000
log lines and 100 metric records a run, ~15 state events and agent lines and
~200 output notices a run) in SQLite, measured with this schema and its
indexes: a log line of 80 characters takes ~140 B, a metric record ~100 B, an
event ~150 B (a heartbeat ~130 B), a run with its item ~2.3 KB.

    logs      2,000 x 1,000 x 140 B = 280 MB a day x  7 days = 2.0 GB
    metrics   2,000 x   100 x 100 B =  20 MB a day x 30 days = 0.6 GB
    events    2,000 x    15 x 150 B = 4.5 MB a day x 30 days = 0.14 GB
    notices   20 agents x 17,280 heartbeats x 130 B = 45 MB a day, plus
              2,000 x 200 x 150 B = 60 MB a day;        x 1 day = 0.1 GB
    runs      2,000 x 2.3 KB = 4.6 MB a day, never pruned: 1.7 GB a year

About 4.5 GB after a year (of which only the runs keep growing, 1.7 GB a year);
without pruning the same year takes ~150 GB (logs 100 GB, output notices 22 GB,
heartbeats 16 GB, metrics 7 GB). A team printing 100 lines a run can keep logs
70 days in the same space. SQLite reuses the pages pruning frees but never shrinks the file.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from launch_tui.core.errors import ValidationError

DEFAULT_PROJECT = "default"


def default_home() -> Path:
    env = os.environ.get("LAUNCH_TUI_HOME")
    if env:
        return Path(env).expanduser()
    return Path("~/.local/share/launch-tui").expanduser()


@dataclass(frozen=True)
class Retention:
    """How long history is kept (`[retention]`; see the module docstring)."""

    events_days: float = 30.0
    notice_days: float = 1.0
    events_keep: int = 100_000
    logs_days: float = 7.0
    metrics_days: float = 30.0
    agents_days: float = 30.0
    prune_every_minutes: float = 10.0

    def replace(self, **changes: float | None) -> Retention:
        """A copy with the given keys changed (None: unchanged), checked like the file."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update({k: v for k, v in changes.items() if v is not None})
        return retention_from(data, where="retention: ")


def retention_from(data: object, *, where: str = "settings: retention.") -> Retention:
    """Check a `[retention]` table: known keys, numbers, none negative. `where` comes
    before the key in an error: what the file calls it, or "retention: " for overrides."""
    if not isinstance(data, dict):
        raise ValidationError("settings: [retention] must be a table of keys and numbers.")
    known = {f.name: f for f in fields(Retention)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ValidationError(f"{where}{key} is not a retention setting "
                                  f"(known: {', '.join(known)}).", field=f"retention.{key}")
        # bool is an int to Python, but `logs_days = true` is a mistake, not one day.
        integral = known[key].type in (int, "int")
        ok_type = (int,) if integral else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_type) or not value >= 0:
            kind = "a whole number" if integral else "a number"
            raise ValidationError(f"{where}{key} must be {kind}, 0 or more "
                                  f"(got {value!r}).", field=f"retention.{key}")
        values[key] = value if integral else float(value)
    return Retention(**values)


@dataclass(frozen=True)
class StoreSettings:
    """How the store uses its database (`[store]`). libpq's own connection parameters
    (sslmode, application_name, connect_timeout, …) go in the URL's query string."""

    pool_size: int = 4
    statement_timeout_s: float | None = None
    # The store's transactions are one call each on a thread and never wait inside: a
    # session idle in one for long belongs to a process that was stopped or hung
    # mid-write, and its row locks would hold up every other agent (a successor
    # taking its name, above all) for as long.
    idle_in_transaction_timeout_s: float = 10.0


POOL_SIZE_MAX = 64  # each reader is a thread and a server connection


def store_from(data: object) -> tuple[str | None, StoreSettings]:
    """Check the `store` key: a URL (or SQLite path), or a `[store]` table of `url`,
    `pool_size`, `statement_timeout_s` and `idle_in_transaction_timeout_s`. Returns
    (url or None, the settings)."""
    if isinstance(data, str):
        return data, StoreSettings()
    if not isinstance(data, dict):
        raise ValidationError(
            "settings: store must be a URL or path, or a [store] table "
            f"(got {data!r}).", field="store")
    known = ("url", *(f.name for f in fields(StoreSettings)))
    for key in data:
        if key not in known:
            raise ValidationError(f"settings: store.{key} is not a store setting "
                                  f"(known: {', '.join(known)}).", field=f"store.{key}")
    url = data.get("url")
    if url is not None and (not isinstance(url, str) or not url):
        raise ValidationError(f"settings: store.url must be a URL or path (got {url!r}).",
                              field="store.url")
    pool_size = data.get("pool_size", StoreSettings.pool_size)
    # bool is an int to Python, but `pool_size = true` is a mistake, not one thread.
    if (isinstance(pool_size, bool) or not isinstance(pool_size, int)
            or not 1 <= pool_size <= POOL_SIZE_MAX):
        raise ValidationError(f"settings: store.pool_size must be a whole number from 1 to "
                              f"{POOL_SIZE_MAX} (got {pool_size!r}).", field="store.pool_size")
    timeout = _seconds(data, "statement_timeout_s")
    idle = _seconds(data, "idle_in_transaction_timeout_s")
    return url, StoreSettings(
        pool_size=pool_size, statement_timeout_s=timeout,
        idle_in_transaction_timeout_s=(StoreSettings.idle_in_transaction_timeout_s
                                       if idle is None else idle))


def _seconds(data: dict[str, Any], key: str) -> float | None:
    """A `[store]` timeout in seconds, 0 (no limit) or more; None when not given."""
    value = data.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                              or not 0 <= value < float("inf")):
        raise ValidationError(f"settings: store.{key} must be a number of "
                              f"seconds, 0 (no limit) or more (got {value!r}).",
                              field=f"store.{key}")
    return None if value is None else float(value)


@dataclass(frozen=True)
class TuiSettings:
    """How the app tells the user about runs (`[tui]`)."""

    notify_finished: bool = True  # a notice when a run finishes (failures always notify)
    bell_on_failure: bool = False  # ring the terminal bell when a run fails


def tui_from(data: object) -> TuiSettings:
    if not isinstance(data, dict):
        raise ValidationError("settings: [tui] must be a table of keys and values.",
                              field="tui")
    known = {f.name for f in fields(TuiSettings)}
    for key, value in data.items():
        if key not in known:
            raise ValidationError(f"settings: tui.{key} is not a tui setting "
                                  f"(known: {', '.join(sorted(known))}).", field=f"tui.{key}")
        if not isinstance(value, bool):
            raise ValidationError(f"settings: tui.{key} must be true or false "
                                  f"(got {value!r}).", field=f"tui.{key}")
    return TuiSettings(**data)


# Keys are Textual key names joined by commas ("e", "ctrl+e", "x,delete", "?"): names
# of letters, digits, punctuation and modifiers, or one printable character; no spaces.
_ONE_KEY = r"(?:[A-Za-z0-9_+\-]+|[^\s,])"
_KEY_NAME = re.compile(rf"^{_ONE_KEY}(,{_ONE_KEY})*$")


def keys_from(data: object) -> dict[str, str]:
    """Check a `[keys]` table: action name -> keys. Which action names exist is the
    front end's to say (it refuses unknown ones with the list); here, the form."""
    if not isinstance(data, dict):
        raise ValidationError("settings: [keys] must be a table of action = \"key\" lines.",
                              field="keys")
    out: dict[str, str] = {}
    for action, keys in data.items():
        if not isinstance(keys, str) or not _KEY_NAME.match(keys):
            raise ValidationError(
                f"settings: keys.{action} must be key names joined by commas, such as "
                f"\"e\" or \"ctrl+e,f5\" (got {keys!r}).", field=f"keys.{action}")
        out[str(action)] = keys
    return out


@dataclass(frozen=True)
class Settings:
    home: Path
    store_url: str = field(repr=False)  # may hold a password: not in tracebacks' locals
    default_project: str = DEFAULT_PROJECT
    snapshot_max_bytes: int = 100 * 1024 * 1024
    poll_interval_s: float = 3.0
    lease_s: float = 30.0
    agent_stale_s: float = 30.0
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    retention: Retention = field(default_factory=Retention)
    store: StoreSettings = field(default_factory=StoreSettings)
    tui: TuiSettings = field(default_factory=TuiSettings)
    keys: dict[str, str] = field(default_factory=dict)  # `[keys]`: action -> keys

    @property
    def artifacts(self) -> Path:
        return self.home / "artifacts"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


# URL schemes people type, and those older settings named (the store once used
# asyncio drivers), mapped to the synchronous drivers the store's threads use.
_SCHEMES = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+asyncpg": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "sqlite": "sqlite",
    "sqlite+aiosqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
}


def normalise_store_url(url: str) -> str:
    """Accept the short forms people type and pick the driver for them."""
    if "://" not in url:
        # A bare path means an SQLite file.
        return sqlite_url(Path(url).expanduser().resolve())
    scheme, rest = url.split("://", 1)
    return f"{_SCHEMES.get(scheme.lower(), scheme)}://{rest}"


def load_settings(home: Path | None = None, store: str | None = None) -> Settings:
    home = (home or default_home()).expanduser()
    if home.exists() and not home.is_dir():
        raise ValidationError(
            f"home: {home} is not a directory (--home and LAUNCH_TUI_HOME name the "
            "directory launch-tui keeps its data in).")
    data: dict[str, Any] = {}
    path = home / "settings.toml"
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValidationError(f"settings: {path} is not valid TOML ({exc}).") from exc
        except OSError as exc:
            raise ValidationError(f"settings: cannot read {path} ({exc.strerror}).") from exc
    file_url, store_settings = store_from(data.get("store", {}))
    url = store or os.environ.get("LAUNCH_TUI_STORE") or file_url
    store_url = normalise_store_url(url) if url else sqlite_url(home / "launch.db")
    agent = data.get("agent", {})
    return Settings(
        home=home,
        store_url=store_url,
        default_project=data.get("default_project", DEFAULT_PROJECT),
        snapshot_max_bytes=int(data.get("snapshot_max_mb", 100) * 1024 * 1024),
        poll_interval_s=float(agent.get("poll_interval_s", 3.0)),
        lease_s=float(agent.get("lease_s", 30.0)),
        agent_stale_s=float(agent.get("stale_s", 30.0)),
        backends=data.get("backends", {}),
        retention=retention_from(data.get("retention", {})),
        store=store_settings,
        tui=tui_from(data.get("tui", {})),
        keys=keys_from(data.get("keys", {})),
    )
