"""The real agent on a docker queue, end to end.

Each test opens its own embedded store in a temp home, makes code jobs from
real files, creates a docker queue on the test base image and lets a real
`LaunchAgent` (in this process, or `launch-tui agent` in its own process)
build the image on the private Docker daemon, run the container and supervise
it. What is asserted is what a user sees through the service: run states and
reasons, stored logs and metrics, agent log lines, plus what is left on the
daemon (containers) afterwards.

The daemon and base image come from `scripts/test-services.sh start`; when the
daemon does not answer the tests fail rather than skip. Containers run with
network "none" (the backend's default); builds without requirements use
network "none" too, and the one with requirements installs with `--no-index`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from launch_tui.backends.docker_backend import LABEL_RUN, TIMEOUT_KILL_GRACE_S, container_name
from launch_tui.core.agent import LaunchAgent
from launch_tui.core.model import ErrorStage, ItemState, LogStream, Run, RunState
from launch_tui.core.service import LaunchService
from tests.backends.docker.helpers import BASE_IMAGE, connect_test_daemon

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
AGENT = "dock-agent"
# The first build of a job makes a venv in the base image; a few seconds, well under this.
BUILD_WITHIN = 80.0


# ---------------------------------------------------------------------- waiting


async def wait_for(check: Callable[[], Any], what: Callable[[], str] | str,
                   within: float, interval: float = 0.1) -> Any:
    """Poll `check` (sync or async) until truthy, for at most `within` (< 90) seconds."""
    assert within < 90
    deadline = time.monotonic() + within
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            detail = what() if callable(what) else what
            raise AssertionError(f"timed out after {within:g}s waiting for {detail}")
        await asyncio.sleep(interval)


# ---------------------------------------------------------------------- the daemon


@pytest.fixture(scope="module")
def docker_client() -> Any:
    return connect_test_daemon()


def container_exists(client: Any, run_id: str) -> bool:
    import docker

    try:
        client.api.inspect_container(container_name(run_id))
    except docker.errors.NotFound:
        return False
    return True


def containers_created(client: Any, run_id: str, since: float) -> list[dict[str, Any]]:
    """The daemon's own record: every `create` event of a container for this run."""
    events = client.events(
        since=int(since) - 1, until=int(time.time()) + 1, decode=True,
        filters={"type": "container", "event": "create", "label": f"{LABEL_RUN}={run_id}"},
    )
    try:
        return list(events)
    finally:
        events.close()


# ---------------------------------------------------------------------- the world


class World:
    """One test's home, store, docker queue, jobs and agents; cleans up after itself."""

    def __init__(self, root: Path, service: LaunchService, client: Any) -> None:
        self.root = root
        self.home = root / "home"
        self.service = service
        self.client = client
        self.agents: list[LaunchAgent] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.jobs: list[str] = []
        self.layers: list[str] = []  # the last layer a failed build left behind
        self.started = time.time()

    async def queue(self, resource_args: dict[str, Any] | None = None, name: str = "dq") -> str:
        await self.service.create_queue(
            name, "docker", {"base_image": BASE_IMAGE, "resource_args": resource_args or {}}
        )
        return name

    async def job(self, files: dict[str, str], entrypoint: str = "python3 train.py",
                  config: dict[str, Any] | None = None) -> str:
        """A code job from real files; its unique name keeps its image ours to remove."""
        name = f"e2e-dock-{uuid.uuid4().hex[:8]}"
        self.jobs.append(name)
        src = self.root / "src" / name
        for rel, text in files.items():
            path = src / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).lstrip())
        await self.service.create_code_job(src, entrypoint, name=name, config_defaults=config)
        return name

    async def agent(self, name: str = AGENT) -> LaunchAgent:
        agent = LaunchAgent(self.service, ["dq"], name=name, poll_interval_s=1.0,
                            cancel_grace_s=5.0)
        self.agents.append(agent)
        await agent.start()
        return agent

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["LAUNCH_TUI_HOME"] = str(self.home)
        env.pop("LAUNCH_TUI_STORE", None)
        return env

    def spawn_agent(self, name: str = AGENT) -> tuple[subprocess.Popen[bytes], Path]:
        """`launch-tui agent -q dq --name NAME` in its own process and session."""
        exe = Path(sys.executable).with_name("launch-tui")
        argv = ([str(exe)] if exe.exists() else [sys.executable, "-m", "launch_tui.tui.cli"]) + [
            "agent", "-q", "dq", "--name", name, "--poll-interval", "0.5",
        ]
        log_path = self.root / f"agent-{name}-{len(self.processes)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv, cwd=self.root, env=self.env(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.processes.append(proc)
        return proc, log_path

    # ------------------------------------------------------------------ observing

    async def run_of(self, item_id: int, within: float = 30.0) -> str:
        async def claimed() -> str | None:
            item = await self.service.get_item(item_id)
            assert item.state not in (ItemState.FAILED, ItemState.CANCELLED), item
            return item.run_id

        return await wait_for(claimed, f"item #{item_id} to be claimed", within)

    async def wait_run(self, run_id: str, states: set[RunState] | None = None,
                       within: float = 60.0) -> Run:
        seen: list[Run] = []

        async def reached() -> Run | None:
            run = await self.service.get_run(run_id)
            seen[:] = [run]
            done = run.state in states if states else run.state.terminal
            return run if done else None

        def what() -> str:
            last = seen[0] if seen else None
            return (f"run {run_id} to be {sorted(states) if states else 'over'} "
                    f"(last seen {last.state if last else '?'}: {last.reason if last else ''})")

        return await wait_for(reached, what, within)

    async def lines(self, run_id: str, *streams: str) -> list[str]:
        logs = await self.service.run_logs(run_id, limit=100_000,
                                           streams=streams or ("stdout", "stderr"))
        return [line.text for line in logs]

    async def wait_line(self, run_id: str, text: str, within: float) -> list[str]:
        async def has() -> list[str] | None:
            lines = await self.lines(run_id)
            return lines if text in lines else None

        return await wait_for(has, f"run {run_id} to print {text!r}", within)

    async def agent_messages(self, name: str = AGENT) -> list[str]:
        return [ev.message for ev in await self.service.agent_logs(name, limit=1000)]

    async def container_removed(self, run_id: str, within: float = 30.0) -> None:
        await wait_for(lambda: not container_exists(self.client, run_id),
                       f"container {container_name(run_id)} to be removed", within)

    # ------------------------------------------------------------------ teardown

    async def close(self) -> None:
        import docker

        for agent in self.agents:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(agent.stop(cancel_runs=True), 30)
        for proc in self.processes:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(proc.wait, 10)
        with contextlib.suppress(Exception):
            for run in await self.service.list_runs():
                with contextlib.suppress(docker.errors.NotFound):
                    self.client.api.remove_container(container_name(run.id), force=True)
        for job in self.jobs:
            for image in self.client.images.list(name=f"launch-tui/{job}"):
                with contextlib.suppress(docker.errors.APIError):
                    self.client.images.remove(image.id, force=True)
        for layer in self.layers:  # its removal cascades up to the base image
            with contextlib.suppress(docker.errors.APIError):
                self.client.images.remove(layer)
        await self.service.close()

    async def forget_failed_build(self, run_id: str) -> None:
        build = await self.lines(run_id, "build")
        ids = [m[1] for ln in build if (m := re.match(r"^ ---> ([0-9a-f]{12})$", ln))]
        self.layers.extend(ids[-1:])


@pytest.fixture
async def world(tmp_path: Path, docker_client: Any) -> AsyncIterator[World]:
    service = await LaunchService.open(home=tmp_path / "home")
    w = World(tmp_path, service, docker_client)
    try:
        yield w
    finally:
        await w.close()


# ---------------------------------------------------------------------- 1, 2: build, run, cache


CONFIG_JOB = {
    "train.py": """
        import json, os
        config = json.loads(os.environ["WANDB_CONFIG"])
        print("config", json.dumps(config, sort_keys=True))
        print("hello from", os.environ["LAUNCH_TUI_RUN_ID"])
    """,
}


async def test_code_job_builds_runs_and_is_cleaned_up(world: World) -> None:
    await world.queue()
    job = await world.job(CONFIG_JOB, config={"lr": 0.1, "epochs": 2})
    agent = await world.agent()
    item = await world.service.enqueue(f"{job}:latest", "dq", config={"lr": 0.5})
    rid = await world.run_of(item.id)

    run = await world.wait_run(rid, within=BUILD_WITHIN)
    assert run.state is RunState.FINISHED, (run.reason, run.error_message)
    assert run.exit_code == 0 and run.error_stage is None
    assert run.spec["environment"]["build_cached"] is False
    assert run.spec["image"].startswith(f"launch-tui/{job}:")
    # The override reached the job through WANDB_CONFIG, merged over the defaults.
    assert await world.lines(rid) == [
        'config {"epochs": 2, "lr": 0.5}',
        f"hello from {rid}",
    ]
    stdout = await world.service.run_logs(rid, streams=("stdout",))
    assert [ln.stream for ln in stdout] == [LogStream.STDOUT] * 2
    build = await world.lines(rid, "build")
    assert any(ln.startswith("Step 1/") and BASE_IMAGE in ln for ln in build), build
    assert any(ln.startswith("Successfully tagged launch-tui/") for ln in build), build
    # The state history went through every stage, in order.
    ts = run.timestamps
    assert ts["building"] <= ts["starting"] <= ts["running"] <= ts["finished"], ts

    # A container existed for it, and the agent removed it once the result was stored.
    assert run.handle and run.handle["data"]["container"] == container_name(rid)
    assert len(containers_created(world.client, rid, world.started)) == 1
    await world.container_removed(rid)
    assert f"run {rid} finished" in await world.agent_messages()
    # The run's task ends just after the cleanup it awaited.
    await wait_for(lambda: agent.running == 0, "the agent to let go of the run", 10)


async def test_second_run_of_the_same_version_is_a_cache_hit(world: World) -> None:
    await world.queue()
    job = await world.job(CONFIG_JOB, config={"lr": 0.1})
    await world.agent()

    first = await world.run_of((await world.service.enqueue(job, "dq")).id)
    run1 = await world.wait_run(first, within=BUILD_WITHIN)
    assert run1.state is RunState.FINISHED, (run1.reason, run1.error_message)
    second = await world.run_of(
        (await world.service.enqueue(job, "dq", config={"lr": 0.2})).id
    )
    run2 = await world.wait_run(second, within=60)
    assert run2.state is RunState.FINISHED, (run2.reason, run2.error_message)

    assert run1.spec["environment"]["build_cached"] is False
    assert run2.spec["environment"]["build_cached"] is True
    assert run2.spec["image"] == run1.spec["image"]
    messages = await world.agent_messages()
    assert any(m.startswith(f"run {first}: build stage built in ") for m in messages), messages
    assert f"run {second}: build stage cache hit" in messages
    build2 = await world.lines(second, "build")
    assert build2 == [f"build: {run2.spec['image']} already built; reusing it"]
    # Same image, new config: the second run still sees its own override.
    assert (await world.lines(second))[0] == 'config {"lr": 0.2}'
    # Built once: the daemon has exactly one image for the job.
    assert len(world.client.images.list(name=f"launch-tui/{job}")) == 1


# ---------------------------------------------------------------------- 3: build failure


async def test_broken_requirement_fails_the_run_at_the_build_stage(world: World) -> None:
    await world.queue()
    job = await world.job({
        "train.py": "print('never runs')\n",
        # --no-index: pip looks nowhere but here, so the failure needs no network.
        "requirements.txt": "--no-index\nno-such-package-launch-tui==1.0\n",
    })
    await world.agent()
    rid = await world.run_of((await world.service.enqueue(job, "dq")).id)

    run = await world.wait_run(rid, within=BUILD_WITHIN)
    await world.forget_failed_build(rid)
    assert run.state is RunState.FAILED
    assert run.error_stage is ErrorStage.BUILD
    assert run.reason == "build failed"
    msg = run.error_message or ""
    # The builder names the failing step and pip's own error line.
    assert "(RUN pip install -r requirements.txt) failed" in msg, msg
    assert "No matching distribution found for no-such-package-launch-tui==1.0" in msg, msg
    assert any("no-such-package-launch-tui" in ln for ln in await world.lines(rid, "build"))
    # It never got as far as a container.
    assert run.handle is None and "running" not in run.timestamps
    assert containers_created(world.client, rid, world.started) == []
    assert await world.lines(rid) == []


# ---------------------------------------------------------------------- 4: cancel


SLEEPER = {
    "train.py": """
        import signal, sys, time
        def bye(signum, frame):
            print("got SIGTERM, leaving", flush=True)
            sys.exit(3)
        signal.signal(signal.SIGTERM, bye)
        print("started", flush=True)
        time.sleep(300)
        print("slept through", flush=True)
    """,
}


async def test_cancel_stops_a_running_container(world: World) -> None:
    await world.queue()
    job = await world.job(SLEEPER)
    await world.agent()
    rid = await world.run_of((await world.service.enqueue(job, "dq")).id)
    await world.wait_run(rid, {RunState.RUNNING}, within=BUILD_WITHIN)
    await world.wait_line(rid, "started", within=30)

    assert await world.service.cancel(rid) == f"run {rid} stopping"
    run = await world.wait_run(rid, within=30)
    assert run.state is RunState.STOPPED, (run.state, run.reason)
    assert run.reason == "stopped on request"
    assert run.error_stage is None
    # docker-init passed SIGTERM on to the job, which had the grace period to leave.
    assert await world.lines(rid) == ["started", "got SIGTERM, leaving"]
    assert run.exit_code == 3
    assert run.timestamps["stopping"] <= run.timestamps["stopped"]
    await world.container_removed(rid)


# ---------------------------------------------------------------------- 5: memory limit


async def test_memory_limit_fails_the_run_as_out_of_memory(world: World) -> None:
    await world.queue({"memory": "16m"})
    job = await world.job({
        "train.py": """
            print("allocating", flush=True)
            hog = "x" * (200 * 1024 * 1024)  # written, so the pages are really used
            print("allocated", len(hog), flush=True)
        """,
    })
    await world.agent()
    rid = await world.run_of((await world.service.enqueue(job, "dq")).id)

    run = await world.wait_run(rid, within=BUILD_WITHIN)
    assert run.state is RunState.FAILED, (run.state, run.reason)
    assert run.reason == "out of memory: killed by the kernel (memory limit 16m)"
    assert run.error_stage is ErrorStage.RUN
    assert run.exit_code == 137
    assert (run.error_message or "").startswith(run.reason)
    lines = await world.lines(rid)
    assert lines == ["allocating"], lines
    await world.container_removed(rid)


# ---------------------------------------------------------------------- 6: agent restart


async def test_agent_killed_and_restarted_reattaches_the_same_container(world: World) -> None:
    n = 40
    await world.queue()
    job = await world.job({
        "train.py": f"""
            import time
            for i in range({n}):
                print(f"line {{i}}", flush=True)
                time.sleep(0.25)
        """,
    })
    proc, log_path = world.spawn_agent()
    rid = await world.run_of((await world.service.enqueue(job, "dq")).id)

    def agent_output() -> str:
        return f"agent A's output:\n{log_path.read_text(errors='replace')}"

    try:
        await world.wait_run(rid, {RunState.RUNNING}, within=BUILD_WITHIN)
        await world.wait_line(rid, "line 0", within=30)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{agent_output()}") from None
    os.kill(proc.pid, signal.SIGKILL)
    await asyncio.to_thread(proc.wait, 10)  # reaped: a zombie would still look alive
    before = await world.lines(rid)
    assert before and before == [f"line {i}" for i in range(len(before))], before
    # The container goes on without an agent.
    assert world.client.api.inspect_container(container_name(rid))["State"]["Running"]
    await asyncio.sleep(1.0)

    agent_b = await world.agent(AGENT)
    run = await world.wait_run(rid, within=60)
    assert run.state is RunState.FINISHED, (run.state, run.reason, agent_output())
    assert run.exit_code == 0

    after = await world.lines(rid)
    # Every line exactly once, in order: lines from before the kill and after the restart.
    assert after == [f"line {i}" for i in range(n)], after
    assert 0 < len(before) < n
    messages = await world.agent_messages()
    assert f"re-attached to run {rid} on docker" in messages, messages
    assert sum(m == f"submitted run {rid} to docker" for m in messages) == 1, messages
    # One container for the run, ever, and it is gone now.
    assert len(containers_created(world.client, rid, world.started)) == 1
    await world.container_removed(rid)
    await wait_for(lambda: agent_b.running == 0, "agent B to let go of the run", 10)
    runs = await world.service.list_runs("dq")
    assert [r.id for r in runs] == [rid]


# ---------------------------------------------------------------------- 7: in-job helper


async def test_in_job_helper_metrics_reach_the_store(world: World) -> None:
    await world.queue()
    job = await world.job({
        "train.py": """
            import launch_tui_sdk as lt
            config = lt.init({"lr": 0.1, "steps": 1})
            for step in range(config["steps"]):
                lt.log({"loss": 1.0 / (step + 1), "lr": config["lr"]})
            print("done", config["steps"])
        """,
    })
    await world.agent()
    rid = await world.run_of(
        (await world.service.enqueue(job, "dq", config={"steps": 3, "lr": 0.5})).id
    )
    run = await world.wait_run(rid, within=BUILD_WITHIN)
    assert run.state is RunState.FINISHED, (run.state, run.error_message)

    metrics = await world.service.run_metrics(rid)
    assert [(m.step, m.values) for m in metrics] == [
        (0, {"loss": 1.0, "lr": 0.5}),
        (1, {"loss": 0.5, "lr": 0.5}),
        (2, {"loss": 1.0 / 3, "lr": 0.5}),
    ]
    # Helper lines become metrics and stay out of the visible log.
    assert await world.lines(rid) == ["done 3"]


# ---------------------------------------------------------------------- 8: timeout_s


async def test_timeout_s_stops_the_container(world: World) -> None:
    await world.queue({"timeout_s": 2})
    job = await world.job(SLEEPER)
    await world.agent()
    rid = await world.run_of((await world.service.enqueue(job, "dq")).id)
    await world.wait_run(rid, {RunState.RUNNING}, within=BUILD_WITHIN)

    run = await world.wait_run(rid, within=30)  # the job itself would sleep for 300 s
    assert run.state is RunState.FAILED, (run.state, run.reason)
    assert run.reason == "timed out after 2 s"
    assert run.error_stage is ErrorStage.RUN
    # Stopped by SIGTERM (forwarded to the job), soon after the limit.
    assert await world.lines(rid) == ["started", "got SIGTERM, leaving"]
    took = run.timestamps["failed"] - run.timestamps["running"]
    assert 1.5 <= took < 15, run.timestamps
    await world.container_removed(rid)


async def test_timeout_s_kills_a_job_that_ignores_sigterm(world: World) -> None:
    await world.queue({"timeout_s": 1})
    job = await world.job({
        "train.py": """
            import signal, time
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print("started", flush=True)
            time.sleep(300)
        """,
    })
    await world.agent()
    rid = await world.run_of((await world.service.enqueue(job, "dq")).id)
    await world.wait_run(rid, {RunState.RUNNING}, within=BUILD_WITHIN)

    run = await world.wait_run(rid, within=40)
    assert run.state is RunState.FAILED, (run.state, run.reason)
    # Not mistaken for out of memory: exit code 137 here is the SIGKILL after the grace.
    assert run.reason == "timed out after 1 s"
    assert run.exit_code == 137
    took = run.timestamps["failed"] - run.timestamps["running"]
    assert TIMEOUT_KILL_GRACE_S <= took < TIMEOUT_KILL_GRACE_S + 15, run.timestamps
    assert await world.lines(rid) == ["started"]
    await world.container_removed(rid)
