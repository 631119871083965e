"""DockerBackend against the real daemon: containers, states, logs, cancel, re-attach.

Runs start from the base image itself (no build), so these tests stay fast.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from launch_tui.backends.docker_backend import DockerBackend, container_name
from launch_tui.core.backend import Backend, BackendContext, LogChunk, RunHandle
from launch_tui.core.errors import BackendError, ValidationError
from launch_tui.core.model import JobKind, LogStream, RunSpec, RunState
from tests.backends.docker.conftest import Janitor
from tests.backends.docker.helpers import make_spec, wait_done, wait_running

pytestmark = pytest.mark.docker


def py(run_id: str, code: str, **kw: Any) -> RunSpec:
    """A run of `python3 -c code` in the base image."""
    from tests.backends.docker.helpers import BASE_IMAGE

    return make_spec(
        run_id=run_id,
        job="inline",
        kind=JobKind.IMAGE,
        source={"image": BASE_IMAGE},
        image=BASE_IMAGE,
        entrypoint=("python3", "-c", code),
        **kw,
    )


async def all_logs(backend: DockerBackend, handle: RunHandle) -> list[LogChunk]:
    return [c async for c in backend.logs(handle, follow=False)]


def test_implements_the_backend_protocol(backend: DockerBackend) -> None:
    assert isinstance(backend, Backend)
    assert backend.name == "docker"
    assert "memory" in backend.resource_schema["properties"]


async def test_run_env_labels_and_no_network(
    backend: DockerBackend, janitor: Janitor, docker_client: Any
) -> None:
    rid = janitor.run_id()
    code = (
        "import os, socket; print(os.environ['WANDB_RUN_ID'], os.environ['EXTRA']);"
        "print(sorted(n for _, n in socket.if_nameindex()))"
    )
    spec = py(
        rid,
        code,
        env={"WANDB_RUN_ID": rid, "EXTRA": "from-spec"},
        resource_args={"env": {"EXTRA": "from-resource-args"}, "cpus": 0.5, "shm_size": "8m"},
    )
    handle = await backend.submit(spec)
    assert handle.data["container"] == container_name(rid)
    status = await wait_done(backend, handle)
    assert status.state is RunState.FINISHED and status.exit_code == 0
    # resource_args.env wins over the spec's env; only loopback: network "none".
    assert [c.text for c in await all_logs(backend, handle)] == [
        f"{rid} from-resource-args",
        "['lo']",
    ]
    attrs = docker_client.api.inspect_container(container_name(rid))
    assert attrs["Config"]["Labels"]["launch-tui.run_id"] == rid
    assert attrs["Config"]["Labels"]["launch-tui.queue"] == "docker-q"
    assert attrs["HostConfig"]["NanoCpus"] == 500_000_000
    assert attrs["HostConfig"]["ShmSize"] == 8 * 1024 * 1024
    assert attrs["HostConfig"]["Init"] is True


async def test_submit_is_idempotent(backend: DockerBackend, janitor: Janitor) -> None:
    spec = py(janitor.run_id(), "print('once')")
    first = await backend.submit(spec)
    await wait_done(backend, first)
    second = await backend.submit(spec)
    assert second == first
    # Not started a second time: one line only.
    assert [c.text for c in await all_logs(backend, second)] == ["once"]


async def test_logs_follow_live_and_separate_streams(
    backend: DockerBackend, janitor: Janitor
) -> None:
    code = (
        "import sys, time\n"
        "for i in range(3):\n"
        "    print('out', i, flush=True); print('err', i, file=sys.stderr, flush=True)\n"
        "    time.sleep(0.3)\n"
    )
    handle = await backend.submit(py(janitor.run_id(), code))
    got: list[tuple[LogStream, str, float]] = []
    async for chunk in backend.logs(handle, follow=True):
        got.append((chunk.stream, chunk.text, time.time()))
    # follow ended by itself when the job exited
    assert (await backend.status(handle)).state is RunState.FINISHED
    outs = [t for s, t, _ in got if s is LogStream.STDOUT]
    errs = [t for s, t, _ in got if s is LogStream.STDERR]
    assert outs == ["out 0", "out 1", "out 2"] and errs == ["err 0", "err 1", "err 2"]
    # Lines arrived as they were printed, not all at the end.
    assert got[-1][2] - got[0][2] > 0.4


async def test_a_failing_job_reports_its_exit_code(
    backend: DockerBackend, janitor: Janitor
) -> None:
    handle = await backend.submit(py(janitor.run_id(), "import sys; sys.exit(3)"))
    status = await wait_done(backend, handle)
    assert status.state is RunState.FAILED
    assert status.exit_code == 3
    assert status.reason == "exit code 3"


async def test_cancel_stops_a_running_container(backend: DockerBackend, janitor: Janitor) -> None:
    code = (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        "    print('got SIGTERM', flush=True); sys.exit(143)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('started', flush=True)\n"
        "time.sleep(300)\n"
    )
    handle = await backend.submit(py(janitor.run_id(), code))
    await wait_running(backend, handle)
    async for chunk in backend.logs(handle, follow=True):  # wait until the handler is set
        if chunk.text == "started":
            break
    t0 = time.monotonic()
    await backend.cancel(handle, grace_s=10)
    assert time.monotonic() - t0 < 5  # SIGTERM reached the job through docker-init
    status = await backend.status(handle)
    assert status.state is RunState.STOPPED
    assert status.exit_code == 143
    assert [c.text for c in await all_logs(backend, handle)] == ["started", "got SIGTERM"]


async def test_cancel_kills_a_job_that_ignores_sigterm(
    backend: DockerBackend, janitor: Janitor
) -> None:
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('stubborn', flush=True)\n"
        "time.sleep(300)\n"
    )
    handle = await backend.submit(py(janitor.run_id(), code))
    async for chunk in backend.logs(handle, follow=True):
        if chunk.text == "stubborn":
            break
    t0 = time.monotonic()
    await backend.cancel(handle, grace_s=1)
    assert time.monotonic() - t0 < 10
    status = await backend.status(handle)
    assert status.state is RunState.STOPPED
    assert status.exit_code == 137


async def test_memory_limit_fails_with_an_out_of_memory_reason(
    backend: DockerBackend, janitor: Janitor
) -> None:
    code = "print('allocating', flush=True); b = bytearray(200 * 1024 * 1024); print('survived')"
    handle = await backend.submit(py(janitor.run_id(), code, resource_args={"memory": "16m"}))
    status = await wait_done(backend, handle)
    assert status.state is RunState.FAILED
    assert status.reason == "out of memory: killed by the kernel (memory limit 16m)"
    assert status.exit_code == 137
    assert [c.text for c in await all_logs(backend, handle)] == ["allocating"]


async def test_reattach_after_an_agent_restart(ctx: BackendContext, janitor: Janitor) -> None:
    rid = janitor.run_id()
    first = DockerBackend(ctx)
    code = "import time; print('before', flush=True); time.sleep(1.5); print('after')"
    submitted = await first.submit(py(rid, code))

    restarted = DockerBackend(ctx)  # a new process: nothing in memory
    assert await restarted.find("t-never-submitted") is None
    found = await restarted.find(rid)
    assert found == submitted
    assert (await restarted.status(found)).state is RunState.RUNNING
    lines = [c.text async for c in restarted.logs(found, follow=True)]
    assert lines == ["before", "after"]  # from the start of the run, to its end
    assert (await restarted.status(found)).state is RunState.FINISHED


async def test_a_cancel_is_remembered_across_a_restart(
    ctx: BackendContext, janitor: Janitor
) -> None:
    rid = janitor.run_id()
    handle = await DockerBackend(ctx).submit(py(rid, "import time; time.sleep(300)"))
    await wait_running(DockerBackend(ctx), handle)
    await DockerBackend(ctx).cancel(handle, grace_s=0)
    assert (await DockerBackend(ctx).status(handle)).state is RunState.STOPPED


async def test_container_removed_outside_is_crashed(
    backend: DockerBackend, janitor: Janitor, docker_client: Any
) -> None:
    handle = await backend.submit(py(janitor.run_id(), "import time; time.sleep(300)"))
    docker_client.api.remove_container(handle.data["container"], force=True)
    status = await backend.status(handle)
    assert status.state is RunState.CRASHED
    assert "is gone" in (status.reason or "")
    assert await all_logs(backend, handle) == []


async def test_cleanup_removes_the_container(backend: DockerBackend, janitor: Janitor) -> None:
    rid = janitor.run_id()
    handle = await backend.submit(py(rid, "print(1)"))
    await wait_done(backend, handle)
    await backend.cleanup(handle)
    assert await backend.find(rid) is None
    await backend.cleanup(handle)  # twice is fine


async def test_volumes_need_the_queue_to_allow_them(
    backend: DockerBackend, janitor: Janitor, tmp_path: Path
) -> None:
    rid = janitor.run_id()
    volumes = {"volumes": [f"{tmp_path}:/data:ro"]}
    with pytest.raises(ValidationError) as err:
        await backend.submit(py(rid, "print(1)", resource_args=volumes))
    assert err.value.field == "resource_args.volumes"
    assert str(err.value) == (
        "resource_args.volumes: mounting host paths is not allowed by queue 'docker-q' "
        "(set allow_volumes: true in its config)."
    )
    assert await backend.find(rid) is None  # refused before anything was created

    (tmp_path / "hello.txt").write_text("mounted\n")
    allowed = py(
        rid,
        "print(open('/data/hello.txt').read().strip())",
        resource_args=volumes,
        queue_config={"allow_volumes": True},
    )
    handle = await backend.submit(allowed)
    assert (await wait_done(backend, handle)).state is RunState.FINISHED
    assert [c.text for c in await all_logs(backend, handle)] == ["mounted"]


async def test_host_network_needs_the_queue_to_allow_it(
    backend: DockerBackend, janitor: Janitor
) -> None:
    """Core refuses it at enqueue; submit refuses it again for a spec made elsewhere."""
    rid = janitor.run_id()
    with pytest.raises(ValidationError) as err:
        await backend.submit(py(rid, "print(1)", resource_args={"network": "host"}))
    assert err.value.field == "resource_args.network"
    assert str(err.value) == (
        "resource_args.network: 'host' shares the agent's host network, which is not allowed "
        "by queue 'docker-q' (set allow_host_network: true in its config)."
    )
    assert await backend.find(rid) is None  # refused before anything was created


async def test_an_unstartable_command_fails_with_a_clear_reason(
    backend: DockerBackend, janitor: Janitor, base_image: str
) -> None:
    spec = make_spec(
        run_id=janitor.run_id(),
        job="inline",
        kind=JobKind.IMAGE,
        image=base_image,
        entrypoint=("no-such-program", "--flag"),
    )
    handle = await backend.submit(spec)
    status = await wait_done(backend, handle)
    assert status.state is RunState.FAILED
    assert status.exit_code == 127
    assert status.reason == (
        "exit code 127: command not found? (the entrypoint starts with 'no-such-program')"
    )
    # docker-init says why on stderr, which the run's log keeps.
    logs = await all_logs(backend, handle)
    assert any(c.stream is LogStream.STDERR and "no-such-program" in c.text for c in logs)


async def test_submit_without_an_image_is_refused(backend: DockerBackend, janitor: Janitor) -> None:
    spec = make_spec(run_id=janitor.run_id(), job="j", source={"snapshot": "x"})
    with pytest.raises(BackendError, match="has no image to start"):
        await backend.submit(spec)


async def test_log_stream_stops_when_the_consumer_does(
    backend: DockerBackend, janitor: Janitor
) -> None:
    """Leaving a follow early must not leave a reader thread blocked on the daemon."""
    import threading

    handle = await backend.submit(
        py(janitor.run_id(), "import time; print('x', flush=True); time.sleep(300)")
    )
    before = {t.name for t in threading.enumerate()}
    stream = backend.logs(handle, follow=True)
    assert (await anext(stream)).text == "x"
    await stream.aclose()
    await asyncio.sleep(0.5)
    leftover = {t.name for t in threading.enumerate()} - before
    assert not any(n.startswith("docker-logs-") for n in leftover), leftover
