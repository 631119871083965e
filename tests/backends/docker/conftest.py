"""Fixtures for the Docker builder and backend tests, against a real daemon.

The daemon and the base image come from `scripts/test-services.sh start`. If
the daemon does not answer, the tests fail (they never skip): a green run must
mean the Docker backend was exercised.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from launch_tui.backends.docker_backend import DockerBackend, container_name
from launch_tui.core.backend import BackendContext
from tests.backends.docker.helpers import BASE_IMAGE, BuildLogLines, connect_test_daemon
from tests.git_daemon import GitDaemon, git_daemon


@pytest.fixture(scope="session")
def docker_client() -> Any:
    return connect_test_daemon()


@pytest.fixture
def base_image(docker_client: Any) -> str:
    return BASE_IMAGE


@pytest.fixture
def ctx(tmp_path: Path, docker_client: Any) -> BackendContext:
    return BackendContext(home=tmp_path / "home", artifacts=tmp_path / "artifacts")


@dataclass
class Janitor:
    """Removes what a test made on the daemon: its runs' containers and its jobs' images."""

    client: Any
    run_ids: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)

    def run_id(self) -> str:
        rid = f"t{uuid.uuid4().hex[:12]}"
        self.run_ids.append(rid)
        return rid

    def job(self) -> str:
        name = f"test-job-{uuid.uuid4().hex[:8]}"
        self.jobs.append(name)
        return name

    def clean(self) -> None:
        import docker

        for rid in self.run_ids:
            try:
                self.client.api.remove_container(container_name(rid), force=True)
            except docker.errors.NotFound:
                pass
        for job in self.jobs:
            for image in self.client.images.list(name=f"launch-tui/{job}"):
                # By id: also drops other tags of it (e.g. a registry tag before a push).
                self.client.images.remove(image.id, force=True)
        for image_id in self.layers:
            try:
                self.client.images.remove(image_id)
            except docker.errors.APIError:
                pass  # shared with another image: not ours alone to remove

    def failed_build(self, log: BuildLogLines) -> None:
        """Remember the untagged layers a failed build left (their removal cascades up)."""
        ids = [m[1] for ln in log.lines if (m := re.match(r"^ ---> ([0-9a-f]{12})$", ln))]
        self.layers.extend(ids[-1:])


@pytest.fixture
def janitor(docker_client: Any) -> Iterator[Janitor]:
    j = Janitor(docker_client)
    yield j
    j.clean()


@pytest.fixture
def backend(ctx: BackendContext) -> DockerBackend:
    return DockerBackend(ctx)


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[GitDaemon]:
    with git_daemon(tmp_path / "git") as daemon:
        yield daemon
