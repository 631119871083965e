"""The local-process target pushes: status and output arrive when they happen, not on a timer.

Real supervisors, jobs and fork servers in a temporary home. What a user of the
backend (the agent) sees: watch() tells the end of a run without anyone asking
status(), output shows up while the job still runs, a run started through the
fork server outlives the agent process that asked for it, and many idle runs
cost no thread each.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from lp_harness import Harness

from launch_tui.backends import local_rundir as rd
from launch_tui.backends import local_spawn
from launch_tui.backends.local_forkserver import running_servers
from launch_tui.backends.local_priority import RUNS_SESSION_NICE
from launch_tui.backends.local_process import LocalProcessBackend
from launch_tui.core.backend import RunHandle, RunStatus
from launch_tui.core.errors import BackendError
from launch_tui.core.model import RunState

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def script(body: str) -> dict[str, str | bytes]:
    return {"main.py": textwrap.dedent(body)}


def count_status_calls(backend: LocalProcessBackend) -> list[RunHandle]:
    """Record every status() call on this backend object (it still answers them)."""
    calls: list[RunHandle] = []
    real = backend.status

    async def counting(handle: RunHandle) -> RunStatus:
        calls.append(handle)
        return await real(handle)

    backend.status = counting  # type: ignore[method-assign]
    return calls


def parent_of(pid: int) -> int:
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    return int(raw[raw.rfind(b")") + 2 :].split()[1])


async def timed(statuses: AsyncIterator[RunStatus]) -> list[tuple[RunStatus, float]]:
    return [(status, time.time()) async for status in statuses]


async def test_watch_tells_the_start_and_the_end_without_a_status_call(lp: Harness) -> None:
    calls = count_status_calls(lp.backend)
    handle = await lp.start(
        script(
            """
            import time
            print("ready", flush=True)
            time.sleep(1.5)
            print(f"exiting {time.time():.6f}", flush=True)
            """
        ),
        "python main.py",
    )
    seen = await asyncio.wait_for(timed(lp.backend.watch(handle)), 30)

    states = [status.state for status, _ in seen]
    assert states[-1] == RunState.FINISHED and seen[-1][0].exit_code == 0
    assert RunState.RUNNING in states
    assert calls == []  # told, never asked
    exited_at = float(lp.output_texts(handle.run_id)[-1].split()[1])
    running_at = next(at for status, at in seen if status.state == RunState.RUNNING)
    # RUNNING came while the job slept, the end within a second of the job's last act.
    assert running_at < exited_at
    assert seen[-1][1] - exited_at < 1.0, f"end seen {seen[-1][1] - exited_at:.2f} s late"


async def test_watch_tells_a_crash_when_the_supervisor_and_then_the_job_die(
    lp: Harness,
) -> None:
    calls = count_status_calls(lp.backend)
    handle = await lp.start(script("import time\nprint('ready')\ntime.sleep(60)"), "python main.py")
    await lp.wait_for_output(handle, "ready")
    seen: list[RunStatus] = []

    async def follow() -> None:
        async for status in lp.backend.watch(handle):
            seen.append(status)

    watcher = asyncio.create_task(follow())
    sup = lp.record(handle.run_id, rd.SUPERVISOR)
    job = lp.record(handle.run_id, rd.JOB)
    os.kill(sup["pid"], signal.SIGKILL)
    await asyncio.sleep(0.5)
    # The job outlives its supervisor for now: the run is still running.
    assert not watcher.done() and [s.state for s in seen] == [RunState.RUNNING]
    os.killpg(job["pgid"], signal.SIGKILL)
    await asyncio.wait_for(watcher, 5)
    assert seen[-1] == RunStatus(
        RunState.CRASHED, "the job's process vanished without recording an exit status"
    )
    assert calls == []


async def test_output_arrives_while_the_job_is_still_running(lp: Harness) -> None:
    handle = await lp.start(
        script("import time\nprint('first line', flush=True)\ntime.sleep(60)"), "python main.py"
    )
    logs = lp.backend.logs(handle, follow=True)
    chunk = await asyncio.wait_for(anext(logs), 15)
    arrived = time.time()
    assert chunk.text == "first line"
    assert arrived - chunk.ts < 1.0  # chunk.ts: when the supervisor read it from the job
    assert (await lp.backend.status(handle)).state == RunState.RUNNING

    await lp.backend.cancel(handle, grace_s=1)
    rest = await asyncio.wait_for(_drain(logs), 10)  # following ends with the run
    assert rest == []


async def _drain(logs: AsyncIterator[object]) -> list[object]:
    return [chunk async for chunk in logs]


AGENT = """
import asyncio, json, sys
from pathlib import Path
from launch_tui.backends.local_process import LocalProcessBackend
from launch_tui.core.backend import BackendContext, BuildResult
from launch_tui.core.model import RunSpec
ctx = BackendContext(home=Path(sys.argv[1]), artifacts=Path(sys.argv[2]))
spec = RunSpec.from_dict(json.loads(sys.stdin.read()))
build = BuildResult(details=spec.environment["build"])
asyncio.run(LocalProcessBackend(ctx).submit(spec, build))
print("submitted", flush=True)
import time; time.sleep(120)
"""

TICKS = """
import time
for i in range(30):
    print(f"tick {i}", flush=True)
    time.sleep(0.1)
"""


async def test_the_fork_server_is_shared_and_its_runs_outlive_the_agent(lp: Harness) -> None:
    spec = lp.spec("python main.py", source={"snapshot": lp.snapshot(script(TICKS))})
    built, _ = await lp.build(spec)
    # A separate agent process submits the run (starting the home's fork
    # server), then dies without any cleanup.
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", AGENT, str(lp.ctx.home), str(lp.ctx.artifacts),
        cwd=PROJECT_ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert agent.stdin and agent.stdout
        agent.stdin.write(json.dumps(built.to_dict()).encode())
        agent.stdin.close()
        assert (await asyncio.wait_for(agent.stdout.readline(), 30)).strip() == b"submitted"
        [(server, _)] = running_servers(lp.ctx.home)
        first = lp.record(spec.run_id, rd.SUPERVISOR)
        assert parent_of(first["pid"]) == server  # forked by the server, not the agent
        await lp.wait_for_output(lp.backend._handle(spec.run_id), "tick 2")
    finally:
        agent.kill()
        await agent.wait()

    # Another backend object (a restarted agent) uses the same server.
    fresh = LocalProcessBackend(lp.ctx)
    handle = await fresh.find(spec.run_id)
    assert handle is not None
    assert (await fresh.status(handle)).state == RunState.RUNNING
    second = lp.spec("python main.py", source={"snapshot": lp.snapshot(script(TICKS))})
    built2, result2 = await lp.build(second)
    handle2 = await fresh.submit(built2, result2)
    assert running_servers(lp.ctx.home) == [(server, rd.proc_start_time(server))]
    assert parent_of(lp.record(second.run_id, rd.SUPERVISOR)["pid"]) == server

    for h in (handle, handle2):
        chunks = await lp.logs(h)
        assert [c.text for c in chunks] == [f"tick {i}" for i in range(30)]
        assert (await fresh.status(h)).state == RunState.FINISHED


def _autogroup_fields(pid: int | str) -> list[str]:
    """"/autogroup-7 nice 5", split. The file is empty for the default group (a
    process whose session never called setsid, as under some CI runners)."""
    return Path(f"/proc/{pid}/autogroup").read_text().split()


def autogroup(pid: int | str) -> str:
    """The scheduler autogroup a process is in ("default" for the default group,
    rather than no group at all)."""
    return (_autogroup_fields(pid) or ["default"])[0]


def autogroup_nice(pid: int | str) -> int:
    """The CPU priority of a process's session as a whole."""
    return int((_autogroup_fields(pid) or ["0"])[-1])


async def test_runs_share_one_session_apart_from_the_agent_each_in_its_own_group(
    lp: Harness,
) -> None:
    """Linux's autogroup scheduling shares the CPU equally between sessions: with a
    session per run, a hundred busy runs left the agent a hundredth of the machine
    and dispatch stalled. All of a home's runs live in the fork server's session,
    which is not the agent's (so they outlive it), and each supervisor and each
    job is a process group of its own (so signals reach one run and nothing else).
    That session yields to the agent's: even as one, busy runs took the agent's
    CPU (see `RUNS_SESSION_NICE`)."""
    own_nice = autogroup_nice("self")
    handles = [await lp.start(script(TICKS), "python main.py") for _ in range(2)]
    for handle in handles:
        await lp.wait_for_output(handle, "tick 1")
    [(server, _)] = running_servers(lp.ctx.home)
    supervisors = [lp.record(h.run_id, rd.SUPERVISOR)["pid"] for h in handles]
    jobs = [lp.record(h.run_id, rd.JOB)["pid"] for h in handles]
    assert {os.getsid(pid) for pid in (server, *supervisors, *jobs)} == {os.getsid(server)}
    assert os.getsid(server) != os.getsid(0)
    for pid in (*supervisors, *jobs):
        assert os.getpgid(pid) == pid
    if Path("/proc/self/autogroup").exists():  # kernels built with autogroup
        groups = {autogroup(pid) for pid in (*supervisors, *jobs)}
        assert len(groups) == 1
        assert groups != {autogroup("self")}
        assert {autogroup_nice(pid) for pid in (*supervisors, *jobs)} == {RUNS_SESSION_NICE}
        assert autogroup_nice("self") == own_nice  # the agent's session is left alone
    for handle in handles:
        await lp.backend.cancel(handle, grace_s=1)


async def test_a_dead_fork_server_is_replaced_and_racing_backends_start_one(
    lp: Harness,
) -> None:
    gate = lp.ctx.home.parent / "gate"
    gated = lp.snapshot(script(
        """
        import os, time
        while not os.path.exists(os.environ["GATE"]):
            time.sleep(0.05)
        print("done")
        """
    ))
    specs = [lp.spec("python main.py", source={"snapshot": gated}, env={"GATE": str(gate)})
             for _ in range(4)]
    built = [await lp.build(spec) for spec in specs]
    # Two backend objects (two agents of one home) start at once: one server.
    other = LocalProcessBackend(lp.ctx)
    handles = await asyncio.gather(
        lp.backend.submit(*built[0]), other.submit(*built[1])
    )
    [(server, start)] = running_servers(lp.ctx.home)
    for spec in specs[:2]:
        assert parent_of(lp.record(spec.run_id, rd.SUPERVISOR)["pid"]) == server

    os.kill(server, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while rd.is_alive(server, start) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)  # until init has reaped it
    handles += [await lp.backend.submit(*built[2]), await other.submit(*built[3])]
    [(replacement, _)] = running_servers(lp.ctx.home)
    assert replacement != server
    for spec in specs[2:]:
        assert parent_of(lp.record(spec.run_id, rd.SUPERVISOR)["pid"]) == replacement
    gate.touch()
    for handle in handles:
        assert (await lp.wait(handle)).state == RunState.FINISHED
        assert [c.text for c in await lp.logs(handle)] == ["done"]


async def test_a_stalled_fork_server_is_bypassed_then_used_again_within_seconds(
    lp: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fork server that does not answer (stopped here; starved of CPU under a
    flood, in the field) makes starts fall back to a supervisor of their own for a
    few seconds, not for a minute: the server is asked again once it answers."""
    monkeypatch.setattr(local_spawn, "RETRY_FIRST_S", 1.0)
    handles = [await lp.start({"main.py": "print('first')\n"}, "python main.py")]
    [(server, _)] = running_servers(lp.ctx.home)
    os.kill(server, signal.SIGSTOP)
    try:
        stalled = lp.spec("python main.py", source={"snapshot": lp.snapshot(
            {"main.py": "print('second')\n"})})
        handles.append(await lp.backend.submit(*await lp.build(stalled)))
    finally:
        os.kill(server, signal.SIGCONT)
    direct = lp.record(stalled.run_id, rd.SUPERVISOR)["pid"]
    assert os.getsid(direct) != os.getsid(server)  # a session of its own
    note = (lp.ctx.home / "work" / stalled.run_id / "supervisor.log").read_text()
    assert "fork server unavailable (the fork server did not answer)" in note
    await asyncio.sleep(1.1)
    again = lp.spec("python main.py", source={"snapshot": lp.snapshot(
        {"main.py": "print('third')\n"})})
    handles.append(await lp.backend.submit(*await lp.build(again)))
    assert parent_of(lp.record(again.run_id, rd.SUPERVISOR)["pid"]) == server
    for handle, text in zip(handles, ("first", "second", "third"), strict=True):
        assert (await lp.wait(handle)).state == RunState.FINISHED
        assert [c.text for c in await lp.logs(handle)] == [text]


def test_the_wait_before_asking_a_failing_fork_server_again_doubles_up_to_a_minute(
    tmp_path: Path,
) -> None:
    starter = local_spawn.SupervisorStarter(tmp_path)
    waits = []
    for _ in range(6):
        asked = time.monotonic()
        starter._failed(asked)
        # Requests that were already waiting fail too: the same failure, not more.
        starter._failed(asked - 1.0)
        waits.append(round(starter._retry_at - starter._failed_at))
    assert waits == [5, 10, 20, 40, 60, 60]


PRINT_ENV = "import json, os\nprint(json.dumps(dict(os.environ)))\n"


async def test_the_job_gets_an_explicit_environment_without_the_agents_secrets(
    lp: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAUNCH_TUI_STORE", "postgresql://u:secret@h/db")
    monkeypatch.setenv("PGPASSWORD", "secret-pg")
    monkeypatch.setenv("MY_TOKEN", "x")
    monkeypatch.setenv("HOME", str(lp.ctx.home.parent))
    files = {"main.py": PRINT_ENV}

    async def job_env(**kw: object) -> tuple[dict[str, str], RunHandle]:
        handle = await lp.start(files, "python main.py", **kw)  # type: ignore[arg-type]
        assert (await lp.wait(handle)).state == RunState.FINISHED
        [line] = [c.text for c in await lp.logs(handle)]
        return json.loads(line), handle

    plain, handle = await job_env()
    assert {"LAUNCH_TUI_STORE", "PGPASSWORD", "MY_TOKEN"}.isdisjoint(plain)
    assert plain["PATH"] == os.environ["PATH"]
    assert plain["HOME"] == str(lp.ctx.home.parent)
    assert plain["PYTHONUNBUFFERED"] == "1"
    launch = (lp.run_dir(handle.run_id) / rd.LAUNCH).read_text()
    assert "secret" not in launch and "MY_TOKEN" not in launch

    # The queue lets one more name through; the store's own never passes.
    allowed, handle = await job_env(
        queue_config={"inherit_env": ["MY_TOKEN", "LAUNCH_TUI_*", "PG*"]},
        env={"FROM_QUEUE": "q"},
    )
    assert allowed["MY_TOKEN"] == "x" and allowed["FROM_QUEUE"] == "q"
    assert {"LAUNCH_TUI_STORE", "PGPASSWORD"}.isdisjoint(allowed)
    assert "secret" not in (lp.run_dir(handle.run_id) / rd.LAUNCH).read_text()

    # Nor do the fork server and the supervisors it forks carry them.
    [(server, _)] = running_servers(lp.ctx.home)
    environ = Path(f"/proc/{server}/environ").read_bytes()
    assert b"secret" not in environ and b"MY_TOKEN" not in environ


async def test_a_hundred_idle_runs_cost_no_thread_and_no_status_call_each(
    lp: Harness,
) -> None:
    runs = 100
    digest = lp.snapshot({"README": "sleeps\n"})
    specs = [lp.spec("sleep 60", source={"snapshot": digest}) for _ in range(runs)]
    built = await asyncio.gather(*(lp.build(spec) for spec in specs))
    calls = count_status_calls(lp.backend)
    threads_before = threading.active_count()

    handles = await asyncio.gather(*(lp.backend.submit(*b) for b in built))
    running = {h.run_id: asyncio.Event() for h in handles}
    final: dict[str, RunStatus] = {}

    async def supervise(handle: RunHandle) -> None:
        # What the agent does per run: follow its status and its output.
        logs = asyncio.create_task(_drain(lp.backend.logs(handle, follow=True)))
        async for status in lp.backend.watch(handle):
            if status.state == RunState.RUNNING:
                running[handle.run_id].set()
            final[handle.run_id] = status
        await asyncio.wait_for(logs, 10)

    supervisors = [asyncio.create_task(supervise(h)) for h in handles]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in running.values())), 30)

    threads_during = threading.active_count()
    cpu_before = time.process_time()
    await asyncio.sleep(2.0)
    idle_cpu = time.process_time() - cpu_before
    # Not one thread per run (the executor's few shared workers at most).
    assert threads_during - threads_before < 10, (threads_before, threads_during)
    assert idle_cpu < 0.2, f"{runs} idle runs took {idle_cpu:.2f} s of CPU in 2 s"

    await asyncio.gather(*(lp.backend.cancel(h, grace_s=5) for h in handles))
    await asyncio.wait_for(asyncio.gather(*supervisors), 20)
    assert {s.state for s in final.values()} == {RunState.STOPPED}
    assert calls == []


async def test_a_child_left_holding_the_output_is_killed_and_the_run_ends(lp: Harness) -> None:
    handle = await lp.start(
        script(
            """
            import subprocess, sys
            # Inherits stdout and outlives its parent: the pipes stay open.
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            print("child", child.pid, flush=True)
            """
        ),
        "python main.py",
    )
    started = time.monotonic()
    seen = await asyncio.wait_for(timed(lp.backend.watch(handle)), 20)
    # The run ends with its main process, after the leftover grace (2 s), not in 60 s.
    assert time.monotonic() - started < 10
    assert seen[-1][0] == RunStatus(RunState.FINISHED, None, 0)
    child = int(lp.output_texts(handle.run_id)[0].split()[1])
    assert rd.proc_start_time(child) is None


async def test_sigterm_to_the_supervisor_reaches_the_job(lp: Harness) -> None:
    handle = await lp.start(script("import time\nprint('ready')\ntime.sleep(60)"), "python main.py")
    await lp.wait_for_output(handle, "ready")
    os.kill(lp.record(handle.run_id, rd.SUPERVISOR)["pid"], signal.SIGTERM)
    seen = await asyncio.wait_for(timed(lp.backend.watch(handle)), 10)
    assert seen[-1][0] == RunStatus(RunState.FAILED, "killed by signal SIGTERM", 143)


async def test_an_idle_fork_server_exits_and_the_next_submit_starts_another(
    lp: Harness,
) -> None:
    ctx = dataclasses.replace(lp.ctx, settings={**lp.ctx.settings, "forkserver_idle_s": 0.5})
    backend = LocalProcessBackend(ctx)
    quick = lp.snapshot(script("print('done')"))
    first = await backend.submit(*await lp.build(lp.spec("python main.py",
                                                         source={"snapshot": quick})))
    [(server, start)] = running_servers(lp.ctx.home)
    assert (await lp.wait(first)).state == RunState.FINISHED
    deadline = time.monotonic() + 10
    while rd.is_alive(server, start):
        assert time.monotonic() < deadline, "the idle fork server did not exit"
        await asyncio.sleep(0.1)
    second = await backend.submit(*await lp.build(lp.spec("python main.py",
                                                          source={"snapshot": quick})))
    [(replacement, _)] = running_servers(lp.ctx.home)
    assert replacement != server
    assert (await lp.wait(second)).state == RunState.FINISHED


async def test_without_the_fork_server_supervisors_start_directly_and_are_reaped(
    lp: Harness,
) -> None:
    ctx = dataclasses.replace(lp.ctx, settings={**lp.ctx.settings, "forkserver": False})
    backend = LocalProcessBackend(ctx)
    threads_before = {t.name for t in threading.enumerate()}
    quick = lp.snapshot(script("print('done')"))
    handle = await backend.submit(*await lp.build(lp.spec("python main.py",
                                                          source={"snapshot": quick})))
    supervisor = lp.record(handle.run_id, rd.SUPERVISOR)["pid"]
    assert parent_of(supervisor) == os.getpid() and running_servers(lp.ctx.home) == []
    assert [s.state async for s in backend.watch(handle)][-1] == RunState.FINISHED
    # Reaped through its pidfd, by no thread: no zombie is left behind.
    deadline = time.monotonic() + 5
    while Path(f"/proc/{supervisor}").exists():
        assert time.monotonic() < deadline, "the supervisor was not reaped"
        await asyncio.sleep(0.05)
    # No thread of its own: at most workers of the loop's shared executor (file copies).
    started = {t.name for t in threading.enumerate()} - threads_before
    assert all(name.startswith("asyncio_") for name in started), started


async def test_a_supervisor_started_directly_lowers_its_own_sessions_priority(
    lp: Harness,
) -> None:
    """The fallback start puts a supervisor in a session of its own, which it
    lowers (on kernels with autogroup scheduling) as the fork server lowers the
    shared one; the agent's is untouched."""
    with_autogroup = Path("/proc/self/autogroup").exists()
    own_nice = autogroup_nice("self") if with_autogroup else 0
    ctx = dataclasses.replace(lp.ctx, settings={**lp.ctx.settings, "forkserver": False})
    backend = LocalProcessBackend(ctx)
    handle = await backend.submit(*await lp.build(lp.spec(
        "python main.py", source={"snapshot": lp.snapshot(script(TICKS))})))
    await lp.wait_for_output(handle, "tick 1")
    supervisor = lp.record(handle.run_id, rd.SUPERVISOR)["pid"]
    job = lp.record(handle.run_id, rd.JOB)["pid"]
    assert os.getsid(supervisor) == supervisor != os.getsid(0)
    if with_autogroup:
        assert autogroup(job) == autogroup(supervisor) != autogroup("self")
        assert autogroup_nice(job) == RUNS_SESSION_NICE
        assert autogroup_nice("self") == own_nice
    await backend.cancel(handle, grace_s=1)
    assert [s.state async for s in backend.watch(handle)][-1] == RunState.STOPPED


def _start_a_slow_supervisor(lp: Harness, run_id: str
                             ) -> tuple[subprocess.Popen[bytes], Path]:
    """A real supervisor for `run_id` that holds the run's lock but has not yet written
    supervisor.json: launch.json is a FIFO, whose open blocks it. It stands for one
    the fork server forked after the agent stopped waiting for its answer, slow to
    claim the run (an fsync, under a flood). Returns its pid and a second name of
    the FIFO, through which the test hands it the real launch record."""
    from launch_tui.backends.local_spawn import spawn_direct

    run_dir = lp.run_dir(run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    os.mkfifo(run_dir / rd.LAUNCH)
    feed = run_dir / "feed.fifo"
    os.link(run_dir / rd.LAUNCH, feed)
    early = spawn_direct(run_dir)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{early.pid}/wchan").read_text() != "wait_for_partner":
        assert early.poll() is None and time.monotonic() < deadline, "it never got to launch.json"
        time.sleep(0.01)
    assert (run_dir / rd.SUPERVISOR_LOCK).read_text().split()[0] == str(early.pid)
    return early, feed


async def test_a_supervisor_that_took_the_run_first_is_waited_for_not_called_a_failure(
    lp: Harness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The agent's own supervisor finds the run's lock taken and leaves; the submit
    # must wait for the one holding it, which then runs the job.
    from launch_tui.backends import local_spawn

    ctx = dataclasses.replace(lp.ctx, settings={**lp.ctx.settings, "forkserver": False})
    backend = LocalProcessBackend(ctx)
    spec, result = await lp.build(lp.spec("python main.py", source={
        "snapshot": lp.snapshot(script("print('ran once')"))}))
    early, feed = _start_a_slow_supervisor(lp, spec.run_id)
    ours: list[int] = []
    real_spawn = local_spawn.spawn_direct

    def spawn_and_note(run_dir: Path) -> subprocess.Popen[bytes]:
        proc = real_spawn(run_dir)
        ours.append(proc.pid)
        return proc

    monkeypatch.setattr(local_spawn, "spawn_direct", spawn_and_note)
    submit = asyncio.create_task(backend.submit(spec, result))
    deadline = time.monotonic() + 15
    while not ours or rd.proc_start_time(ours[0]) is not None:
        assert time.monotonic() < deadline, "the submit's own supervisor did not leave"
        assert not submit.done(), submit
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # the submit has seen it go
    assert not submit.done(), "the submit gave up on a run another supervisor holds"
    record = (lp.run_dir(spec.run_id) / rd.LAUNCH).read_bytes()  # what the submit wrote
    # The FIFO's reader is waiting: this write does not block.
    await asyncio.to_thread(feed.write_bytes, record)
    handle = await asyncio.wait_for(submit, 15)
    assert lp.record(handle.run_id, rd.SUPERVISOR)["pid"] == early.pid
    assert [s.state async for s in backend.watch(handle)][-1] == RunState.FINISHED
    assert lp.output_texts(handle.run_id) == ["ran once"]
    assert await asyncio.to_thread(early.wait, 10) == 0


async def test_a_supervisor_holding_the_run_too_long_is_killed_with_the_failed_submit(
    lp: Harness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from launch_tui.backends import local_process

    monkeypatch.setattr(local_process, "START_TIMEOUT_S", 1.5)
    ctx = dataclasses.replace(lp.ctx, settings={**lp.ctx.settings, "forkserver": False})
    backend = LocalProcessBackend(ctx)
    spec, result = await lp.build(lp.spec("python main.py", source={
        "snapshot": lp.snapshot(script("print('must not run')"))}))
    early, _ = _start_a_slow_supervisor(lp, spec.run_id)
    with pytest.raises(BackendError, match=r"did not start within 1\.5 s"):
        await backend.submit(spec, result)
    # It can never start the job behind the back of the failed submit.
    assert await asyncio.to_thread(early.wait, 5) == -signal.SIGKILL
    assert not (lp.run_dir(spec.run_id) / rd.SUPERVISOR).exists()
