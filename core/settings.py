"""Where launch-tui keeps its data, and the few knobs a user may set in TOML.

`$LAUNCH_TUI_HOME/settings.toml` (all keys optional):

    store = "postgresql://…"              # default: sqlite file in the home dir
    default_project = "default"
    snapshot_max_mb = 100
    [agent]
    poll_interval_s = 3.0
    lease_s = 30.0
    stale_s = 30.0        # an agent silent this long is gone: its name is free, its runs
                          # are taken over by another agent of the queue
    [backends.docker]
    base_image = "python:3.11-slim"
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
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
class Settings:
    home: Path
    store_url: str
    default_project: str = DEFAULT_PROJECT
    snapshot_max_bytes: int = 100 * 1024 * 1024
    poll_interval_s: float = 3.0
    lease_s: float = 30.0
    agent_stale_s: float = 30.0
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)

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
    data: dict[str, Any] = {}
    path = home / "settings.toml"
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValidationError(f"settings: {path} is not valid TOML ({exc}).") from exc
    url = store or os.environ.get("LAUNCH_TUI_STORE") or data.get("store")
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
    )
