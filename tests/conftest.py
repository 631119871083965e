"""Fixtures shared by every test folder: a fresh store per test, on SQLite or
PostgreSQL (`--store`, see tests/stores.py)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from launch_tui.core.service import LaunchService
from tests import stores
from tests.agent_harness import Lab

# the `kube` fixture: a Kubernetes API stand-in and a scripted kubelet
pytest_plugins = ["tests.kube.fixtures"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store", choices=stores.STORES,
        default=os.environ.get("LAUNCH_TUI_TEST_STORE", "sqlite"),
        help="the store the suite runs on (default: $LAUNCH_TUI_TEST_STORE or sqlite)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only: about the embedded SQLite file itself; runs on --store sqlite")
    config.addinivalue_line(
        "markers", "postgres_only: about PostgreSQL itself; runs on --store postgres")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of one store's own behaviour run in that store's pass only; they are
    deselected (not skipped) in the other."""
    store = config.getoption("--store")
    other = "postgres_only" if store == "sqlite" else "sqlite_only"
    keep = [i for i in items if i.get_closest_marker(other) is None]
    dropped = [i for i in items if i.get_closest_marker(other) is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--store"))


@pytest.fixture
def store_url(store_kind: str) -> Iterator[str | None]:
    """The URL of this test's own PostgreSQL database, or None on SQLite (the
    embedded store in the test's home)."""
    if store_kind == "sqlite":
        yield None
        return
    with stores.postgres_database() as url:
        yield url


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str | None) -> Path:
    """An empty LAUNCH_TUI_HOME; its store is the embedded SQLite file inside it, or
    the test's PostgreSQL database (LAUNCH_TUI_STORE)."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("LAUNCH_TUI_HOME", str(path))
    if store_url is None:
        monkeypatch.delenv("LAUNCH_TUI_STORE", raising=False)
    else:
        monkeypatch.setenv("LAUNCH_TUI_STORE", store_url)
    return path


@pytest.fixture
async def service(home: Path) -> AsyncIterator[LaunchService]:
    svc = await LaunchService.open(home=home)
    try:
        yield svc
    finally:
        await svc.close()


@pytest.fixture
async def lab(tmp_path: Path, store_url: str | None) -> AsyncIterator[Lab]:
    """A throwaway home with its store, for agents in this process or their own
    (tests/agent_harness.py); every process it started is stopped at the end."""
    lab = await Lab.open(tmp_path, store_url)
    try:
        yield lab
    finally:
        await lab.close()
