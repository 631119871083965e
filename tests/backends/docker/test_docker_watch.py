"""DockerBackend.watch() against the real daemon: pushed by its event stream, not polled.

What is counted is what polling would multiply: reads of a container's state
(each `status()` is one) and event-stream reader threads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from launch_tui.backends import docker_events
from launch_tui.backends.docker_backend import DockerBackend, container_name
from launch_tui.backends.docker_logs import parse_ts
from launch_tui.core.backend import BackendContext, RunHandle, RunStatus
from launch_tui.core.errors import BackendError
from launch_tui.core.model import JobKind, RunSpec, RunState
from tests.backends.docker.conftest import Janitor
from tests.backends.docker.helpers import BASE_IMAGE, make_spec

pytestmark = pytest.mark.docker


class CountingBackend(DockerBackend):
    """The real backend, counting its status() calls and its reads of each container."""

    def __init__(self, ctx: BackendContext) -> None:
        super().__init__(ctx)
        self.status_calls = 0
        self.reads: dict[str, int] = {}

    async def status(self, handle: RunHandle) -> RunStatus:
        self.status_calls += 1
        return await super().status(handle)

    async def _get(self, name_or_id: str) -> Any:
        self.reads[name_or_id] = self.reads.get(name_or_id, 0) + 1
        return await super()._get(name_or_id)


@pytest.fixture
def counting(ctx: BackendContext) -> CountingBackend:
    return CountingBackend(ctx)


def py(run_id: str, code: str) -> RunSpec:
    return make_spec(run_id=run_id, job="inline", kind=JobKind.IMAGE, image=BASE_IMAGE,
                     entrypoint=("python3", "-c", code))


def stream_threads(backend: DockerBackend) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == backend.events.thread_name]


async def until(check: Any, what: str, within: float = 10.0) -> None:
    """Wait for a condition that no event announces (a thread ending)."""
    deadline = time.monotonic() + within
    while True:
        if check():
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_run_end_is_pushed_not_polled(
    counting: CountingBackend, janitor: Janitor, docker_client: Any
) -> None:
    rid = janitor.run_id()
    handle = await counting.submit(py(rid, "import time; time.sleep(2.5); raise SystemExit(3)"))
    name = container_name(rid)
    first = await counting.status(handle)
    assert first.state is RunState.RUNNING
    reads_before = counting.reads[name]

    seen: list[RunStatus] = []
    async for status in counting.watch(handle):
        seen.append(status)
    reported_at = time.time()

    assert seen == [
        RunStatus(RunState.RUNNING),
        RunStatus(RunState.FAILED, reason="exit code 3", exit_code=3),
    ]
    # No status() call after the first, over a run polling would have asked ~10 times
    # about; the container was read twice: when watch() subscribed and when it died
    # (its exit code, OOM flag and the cancel/timeout markers decide the result).
    assert counting.status_calls == 1
    assert counting.reads[name] - reads_before == 2
    # And the end was reported as it happened, not at a later poll.
    finished = parse_ts(docker_client.api.inspect_container(name)["State"]["FinishedAt"])
    assert 0 <= reported_at - finished < 1.0, reported_at - finished


async def test_two_runs_share_one_event_stream(
    counting: CountingBackend, janitor: Janitor
) -> None:
    quick = await counting.submit(py(janitor.run_id(), "import time; time.sleep(1)"))
    slow = await counting.submit(
        py(janitor.run_id(), "import time; time.sleep(2); raise SystemExit(4)")
    )
    names = [h.data["container"] for h in (quick, slow)]
    reads_before = [counting.reads[n] for n in names]
    watches: list[AsyncIterator[RunStatus]] = [counting.watch(quick), counting.watch(slow)]
    # Both runs are being watched once each has reported it is running.
    assert [(await anext(w)).state for w in watches] == [RunState.RUNNING] * 2
    assert len(stream_threads(counting)) == 1
    assert counting.events.connections == 1

    async def rest(w: AsyncIterator[RunStatus]) -> list[RunStatus]:
        return [s async for s in w]

    ends = await asyncio.gather(*(rest(w) for w in watches))
    assert ends == [
        [RunStatus(RunState.FINISHED, exit_code=0)],
        [RunStatus(RunState.FAILED, reason="exit code 4", exit_code=4)],
    ]
    assert counting.status_calls == 0
    # Each container read twice: when its watch subscribed, and when it died.
    assert [counting.reads[n] - b for n, b in zip(names, reads_before, strict=True)] == [2, 2]
    assert counting.events.connections == 1
    # Nobody watches any more: the stream is closed and its thread gone.
    await until(lambda: not stream_threads(counting), "the event reader thread to end")


async def test_a_run_that_ended_before_the_watch_is_reported_at_once(
    backend: DockerBackend, janitor: Janitor, docker_client: Any
) -> None:
    handle = await backend.submit(py(janitor.run_id(), "raise SystemExit(5)"))
    await asyncio.to_thread(docker_client.api.wait, handle.data["container"], timeout=30)
    async with asyncio.timeout(10):
        seen = [s async for s in backend.watch(handle)]
    # Reported at once, with the running it had (its history is whole).
    assert seen == [RunStatus(RunState.RUNNING),
                    RunStatus(RunState.FAILED, reason="exit code 5", exit_code=5)]


async def test_a_start_is_pushed_too(
    backend: DockerBackend, janitor: Janitor, docker_client: Any
) -> None:
    """A container created but not started (an agent stopped between the two) is
    reported starting, then running when it starts, then its end."""
    spec = py(janitor.run_id(), "import time; time.sleep(1)")
    name = container_name(spec.run_id)
    docker_client.containers.create(**backend._create_args(spec, name))
    handle = await backend.find(spec.run_id)
    assert handle is not None
    watch = backend.watch(handle)
    assert (await anext(watch)).state is RunState.STARTING
    docker_client.api.start(name)
    async with asyncio.timeout(15):
        assert [s async for s in watch] == [
            RunStatus(RunState.RUNNING),
            RunStatus(RunState.FINISHED, exit_code=0),
        ]


async def test_a_broken_event_stream_reconnects_and_reads_the_state_again(
    counting: CountingBackend, janitor: Janitor, docker_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No replay on reconnecting: only the re-read can tell the watcher what it missed.
    monkeypatch.setattr(docker_events, "REPLAY_S", 0.0)
    counting.events.backoff = (1.0, 1.0)
    handle = await counting.submit(py(janitor.run_id(), "import time; time.sleep(300)"))
    watch = counting.watch(handle)
    assert (await anext(watch)).state is RunState.RUNNING

    # The connection drops (as when the daemon restarts); the job is killed meanwhile.
    assert counting.events._stream is not None
    counting.events._stream.close()
    docker_client.api.kill(handle.data["container"])
    async with asyncio.timeout(15):
        rest = [s async for s in watch]
    assert rest == [
        RunStatus(RunState.FAILED, reason="killed by signal SIGKILL (exit code 137)",
                  exit_code=137)
    ]
    assert counting.events.connections == 2


async def test_an_unreachable_daemon_fails_the_watch_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")
    backend = DockerBackend(BackendContext(home=tmp_path / "home", artifacts=tmp_path / "a"))
    handle = RunHandle(backend="docker", run_id="r1", data={"container": "launch-tui-r1"})
    async with asyncio.timeout(30):
        with pytest.raises(BackendError, match="cannot reach the Docker daemon"):
            await anext(backend.watch(handle))
    await until(lambda: not stream_threads(backend), "no event reader thread left")
