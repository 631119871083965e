"""Helpers shared by the Docker tests: snapshots, wheels, specs, build logs, waiting."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import uuid
import zipfile
from typing import Any

from launch_tui.backends.docker_backend import DockerBackend
from launch_tui.core.backend import BackendContext, RunHandle, RunStatus
from launch_tui.core.model import JobKind, RunSpec, RunState

BASE_IMAGE = os.environ.get("LAUNCH_TUI_TEST_BASE_IMAGE", "launch-tui/python-base:bookworm")
# The socket scripts/test-services.sh starts dockerd on, when DOCKER_HOST is unset.
SERVICES_SOCKET = "unix:///tmp/launch-tui-docker/docker.sock"
HINT = 'run `scripts/test-services.sh start` and `eval "$(scripts/test-services.sh env)"`'


def connect_test_daemon() -> Any:
    """A client for the test daemon holding the base image; fails the test (never skips)
    when either is missing, so a green run means Docker was really exercised."""
    import docker
    import pytest

    os.environ.setdefault("DOCKER_HOST", SERVICES_SOCKET)
    host = os.environ["DOCKER_HOST"]
    try:
        client = docker.from_env(version="auto")
        client.ping()
    except Exception as exc:
        pytest.fail(f"the Docker daemon at {host} is not reachable ({exc}); {HINT}.", pytrace=False)
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"the base image {BASE_IMAGE} is missing from {host}; {HINT}.", pytrace=False)
    return client


def write_snapshot(ctx: BackendContext, files: dict[str, str | bytes]) -> str:
    """Write a code snapshot where ctx.snapshot_dir finds it; return its digest."""
    h = hashlib.sha256()
    for rel in sorted(files):
        data = files[rel]
        h.update(rel.encode() + b"\0" + (data.encode() if isinstance(data, str) else data))
    digest = h.hexdigest()
    root = ctx.snapshot_dir(digest)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)
    return digest


def wheel(name: str, version: str, module_text: str) -> bytes:
    """A minimal pure-Python wheel, so pip installs it with no network and no build step.

    Byte-for-byte reproducible (fixed timestamps), like a wheel checked into a repo:
    the same wheel must hit the same build cache.
    """
    buf = io.BytesIO()
    info = f"{name}-{version}.dist-info"
    members = {
        f"{name}/__init__.py": module_text,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{info}/RECORD": "",
    }
    with zipfile.ZipFile(buf, "w") as z:
        for arcname, text in members.items():
            z.writestr(zipfile.ZipInfo(arcname, date_time=(2024, 1, 1, 0, 0, 0)), text)
    return buf.getvalue()


def make_spec(
    *,
    run_id: str,
    job: str,
    kind: JobKind = JobKind.CODE,
    entrypoint: tuple[str, ...] = ("python", "train.py"),
    source: dict[str, Any] | None = None,
    environment: dict[str, Any] | None = None,
    resource_args: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    config: dict[str, Any] | None = None,
    job_digest: str | None = None,
    queue_config: dict[str, Any] | None = None,
    image: str | None = None,
) -> RunSpec:
    source = source or {}
    return RunSpec(
        run_id=run_id,
        project="tests",
        queue="docker-q",
        resource="docker",
        job=job,
        version=0,
        kind=kind,
        entrypoint=entrypoint,
        config=config or {},
        resource_args=resource_args or {},
        env=env or {},
        source=source,
        environment=environment if environment is not None else {"requirements": None},
        job_digest=job_digest or str(source.get("snapshot") or uuid.uuid4().hex),
        queue_config={"base_image": BASE_IMAGE, **(queue_config or {})},
        image=image,
    )


class BuildLogLines:
    """A BuildLog that keeps its lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def __call__(self, line: str) -> None:
        self.lines.append(line)

    def step(self, instruction: str) -> list[str]:
        """The output lines of the build step whose instruction starts with `instruction`."""
        out: list[str] | None = None
        for line in self.lines:
            if line.startswith("Step "):
                if out is not None:
                    return out
                if line.split(" : ", 1)[1].startswith(instruction):
                    out = []
            elif out is not None:
                out.append(line)
        if out is None:
            raise AssertionError(
                f"no step '{instruction}' in the build log:\n" + "\n".join(self.lines)
            )
        return out


async def wait_done(backend: DockerBackend, handle: RunHandle, within: float = 60) -> RunStatus:
    """Poll status until the run is in a terminal state."""
    async with asyncio.timeout(within):
        while True:  # the backend has no change feed: polling is how the agent sees it too
            st = await backend.status(handle)
            if st.state.terminal:
                return st
            await asyncio.sleep(0.2)


async def wait_running(backend: DockerBackend, handle: RunHandle, within: float = 30) -> None:
    async with asyncio.timeout(within):
        while True:
            if (await backend.status(handle)).state is RunState.RUNNING:
                return
            await asyncio.sleep(0.1)
