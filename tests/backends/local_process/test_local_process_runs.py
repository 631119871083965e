"""LocalProcessBackend with real supervisors and jobs in a temporary home."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest
from lp_harness import Harness

from launch_tui.backends import local_rundir as rd
from launch_tui.backends import local_supervisor as sv
from launch_tui.backends.local_priority import lower_job_priority
from launch_tui.backends.local_process import LocalProcessBackend
from launch_tui.core.backend import Backend
from launch_tui.core.errors import BackendError
from launch_tui.core.model import LogStream, RunState
from launch_tui.core.registry import create_backend, create_builder

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def script(body: str) -> dict[str, str | bytes]:
    return {"main.py": textwrap.dedent(body)}


async def test_registry_builds_the_local_process_backend_and_builder(lp: Harness) -> None:
    backend = create_backend("local-process", lp.ctx)
    assert isinstance(backend, LocalProcessBackend)
    assert isinstance(backend, Backend)
    assert create_builder("local-process", lp.ctx).name == "local-process"
    assert backend.resource_schema["properties"]["timeout_s"]["type"] == "integer"


async def test_output_comes_back_in_order_with_streams_env_and_workdir(lp: Harness) -> None:
    handle = await lp.start(
        script(
            """
            import os, sys, time
            for i in range(3):
                print(f"out {i}")
                time.sleep(0.05)
                print(f"err {i}", file=sys.stderr)
                time.sleep(0.05)
            print("env", os.environ["FROM_SPEC"], os.environ["FROM_ARGS"])
            print("cwd", os.getcwd())
            print("python", sys.executable)
            """
        ),
        "python main.py",
        env={"FROM_SPEC": "spec-value"},
        resource_args={"env": {"FROM_ARGS": "args value"}},
    )
    chunks = await lp.logs(handle)
    status = await lp.wait(handle)

    assert status.state == RunState.FINISHED
    assert status.exit_code == 0
    pairs = [(c.stream, c.text) for c in chunks]
    expected = []
    for i in range(3):
        expected += [(LogStream.STDOUT, f"out {i}"), (LogStream.STDERR, f"err {i}")]
    assert pairs[:6] == expected
    assert pairs[6] == (LogStream.STDOUT, "env spec-value args value")
    workdir = lp.run_dir(handle.run_id) / "src"
    assert pairs[7] == (LogStream.STDOUT, f"cwd {workdir}")
    # Without requirements the job runs on the agent's interpreter.
    assert pairs[8] == (LogStream.STDOUT, f"python {sys.executable}")
    stamps = [c.ts for c in chunks]
    assert stamps == sorted(stamps) and abs(stamps[0] - time.time()) < 60


async def test_non_zero_exit_fails_with_its_code(lp: Harness) -> None:
    handle = await lp.start(script("import sys; print('bye'); sys.exit(3)"), "python main.py")
    status = await lp.wait(handle)
    assert (status.state, status.exit_code, status.reason) == (RunState.FAILED, 3, "exit code 3")
    # Cancelling a run that has already ended changes nothing.
    await lp.backend.cancel(handle, grace_s=1)
    assert await lp.backend.status(handle) == status


async def test_job_killed_by_a_signal_names_it(lp: Harness) -> None:
    handle = await lp.start(
        script("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"), "python main.py"
    )
    status = await lp.wait(handle)
    assert status.state == RunState.FAILED
    assert status.reason == "killed by signal SIGKILL"
    assert status.exit_code == 137


async def test_cancel_stops_a_running_job(lp: Harness) -> None:
    handle = await lp.start(script("import time\nprint('ready')\ntime.sleep(60)"), "python main.py")
    await lp.wait_for_output(handle, "ready")
    assert (await lp.backend.status(handle)).state == RunState.RUNNING

    started = time.monotonic()
    await lp.backend.cancel(handle, grace_s=10)
    # SIGTERM's default action ends it: no need to wait for the grace period.
    assert time.monotonic() - started < 5
    status = await lp.backend.status(handle)
    assert status.state == RunState.STOPPED
    assert status.reason == "cancelled"
    job = lp.record(handle.run_id, rd.JOB)
    assert not rd.is_alive(job["pid"], job["start_time"])


async def test_cancel_kills_a_job_that_ignores_sigterm_after_the_grace(lp: Harness) -> None:
    handle = await lp.start(
        script(
            """
            import signal, subprocess, sys, time
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            # A child in the job's process group must go too.
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            print("child", child.pid, flush=True)
            print("ready", flush=True)
            time.sleep(60)
            """
        ),
        "python main.py",
    )
    await lp.wait_for_output(handle, "ready")
    started = time.monotonic()
    await lp.backend.cancel(handle, grace_s=1.0)
    elapsed = time.monotonic() - started

    assert 0.9 <= elapsed < 6
    status = await lp.backend.status(handle)
    assert status.state == RunState.STOPPED
    job = lp.record(handle.run_id, rd.JOB)
    assert not rd.is_alive(job["pid"], job["start_time"])
    chunks = await lp.logs(handle)
    child_pid = int(next(c.text for c in chunks if c.text.startswith("child")).split()[1])
    assert rd.proc_start_time(child_pid) is None


async def test_timeout_stops_the_job_and_says_so(lp: Harness) -> None:
    handle = await lp.start(
        script(
            """
            import signal, time
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # forces the SIGKILL after the grace
            print("ready", flush=True)
            time.sleep(60)
            """
        ),
        "python main.py",
        resource_args={"timeout_s": 1},
    )
    started = time.monotonic()
    status = await lp.wait(handle, within=20)
    # timeout 1 s + kill grace 1 s (settings of this test home)
    assert 1.5 <= time.monotonic() - started < 10
    assert status.state == RunState.FAILED
    assert status.reason == "timed out after 1 s"


NICENESS = """
    import os, threading
    def report(who):
        print(who, os.getpriority(os.PRIO_PROCESS, 0), flush=True)  # this thread's
    report("main")
    worker = threading.Thread(target=report, args=("thread",))
    worker.start()
    worker.join()
    """


async def test_nice_lowers_the_priority_of_the_job_and_of_its_threads(lp: Harness) -> None:
    """Jobs run at niceness 5 unless told otherwise; `nice: 0` runs one at the
    agent's own priority."""
    base = os.getpriority(os.PRIO_PROCESS, 0)
    niced = await lp.start(script(NICENESS), "python main.py", resource_args={"nice": 7})
    default = await lp.start(script(NICENESS), "python main.py")
    plain = await lp.start(script(NICENESS), "python main.py", resource_args={"nice": 0})
    for handle, expected in ((niced, min(19, base + 7)), (default, min(19, base + 5)),
                             (plain, base)):
        assert (await lp.wait(handle)).state == RunState.FINISHED
        assert [c.text for c in await lp.logs(handle)] == [f"main {expected}",
                                                           f"thread {expected}"]


def test_lowering_a_started_job_reaches_the_threads_it_already_has() -> None:
    """The supervisor lowers a job right after its exec (a preexec_fn would cost
    every dispatch a fork): threads the job started before that are lowered too."""
    job = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, threading
            threading.Thread(target=sys.stdin.read, daemon=True).start()
            print("ready", flush=True)
            sys.stdin.read()
            """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert job.stdout is not None and job.stdout.readline() == "ready\n"
        tids = os.listdir(f"/proc/{job.pid}/task")
        assert len(tids) == 2
        base = os.getpriority(os.PRIO_PROCESS, 0)
        lower_job_priority(job.pid, 5)
        assert {os.getpriority(os.PRIO_PROCESS, int(t)) for t in tids} == {min(19, base + 5)}
    finally:
        job.kill()
        job.wait()


async def test_submit_is_idempotent_on_the_run_id(lp: Harness, tmp_path: Path) -> None:
    starts = tmp_path / "starts.txt"
    spec = lp.spec(
        "python main.py",
        source={
            "snapshot": lp.snapshot(
                script(
                    """
                    import os, time
                    with open(os.environ["STARTS"], "a") as f:
                        f.write(f"{os.getpid()}\\n")
                    time.sleep(0.5)
                    """
                )
            )
        },
        env={"STARTS": str(starts)},
    )
    built, result = await lp.build(spec)
    first, second = await asyncio.gather(
        lp.backend.submit(built, result), lp.backend.submit(built, result)
    )
    assert first == second
    assert (await lp.wait(first)).state == RunState.FINISHED
    # After the run ended a retried submit still returns it and starts nothing.
    assert await lp.backend.submit(built, result) == first
    # And so does a second backend (another agent process after a restart).
    assert await LocalProcessBackend(lp.ctx).submit(built, result) == first
    await asyncio.sleep(0.3)
    assert len(starts.read_text().splitlines()) == 1


async def test_a_missing_script_is_refused_at_submit(lp: Harness) -> None:
    spec = lp.spec("python train.py", source={"snapshot": lp.snapshot(script("print(1)"))})
    built, result = await lp.build(spec)
    with pytest.raises(BackendError) as err:
        await lp.backend.submit(built, result)
    assert str(err.value) == (
        "entrypoint: 'python train.py' cannot start: train.py not found in the job's source."
    )
    assert await lp.backend.find(spec.run_id) is None


async def test_a_missing_executable_is_refused_at_submit(lp: Harness) -> None:
    spec = lp.spec("no-such-tool --fast", source={"snapshot": lp.snapshot(script("print(1)"))})
    built, result = await lp.build(spec)
    with pytest.raises(BackendError, match=r"'no-such-tool --fast' cannot start: no-such-tool"):
        await lp.backend.submit(built, result)


async def test_an_entrypoint_that_fails_to_exec_fails_the_run_with_the_reason(lp: Harness) -> None:
    # Passes the submit checks (the file exists and is executable), but its
    # interpreter does not: the supervisor records why it could not start.
    digest = lp.snapshot({"run.sh": "#!/nonexistent/interpreter\necho hi\n"})
    (lp.ctx.snapshot_dir(digest) / "run.sh").chmod(0o755)
    built, result = await lp.build(lp.spec("./run.sh --fast", source={"snapshot": digest}))
    handle = await lp.backend.submit(built, result)
    status = await lp.wait(handle)
    assert status.state == RunState.FAILED
    assert status.exit_code == 127
    assert status.reason is not None
    assert status.reason.startswith("entrypoint: './run.sh --fast' cannot start: ")
    chunks = await lp.logs(handle)
    assert [(c.stream, c.text) for c in chunks] == [(LogStream.STDERR, status.reason)]


async def test_cancelling_a_run_that_never_started_returns_at_once(lp: Harness) -> None:
    handle = lp.backend._handle("never-started")
    await lp.backend.cancel(handle, grace_s=5)
    assert (await lp.backend.status(handle)).state == RunState.CRASHED


async def test_a_run_survives_its_agent_killed_with_sigkill(lp: Harness) -> None:
    spec = lp.spec(
        "python main.py",
        source={
            "snapshot": lp.snapshot(
                script(
                    """
                    import time
                    for i in range(30):
                        print(f"tick {i}")
                        time.sleep(0.1)
                    """
                )
            )
        },
    )
    built, _ = await lp.build(spec)
    # A separate agent process submits the run, then dies without any cleanup.
    agent_code = textwrap.dedent(
        f"""
        import asyncio, json, sys
        from pathlib import Path
        from launch_tui.backends.local_process import LocalProcessBackend
        from launch_tui.core.backend import BackendContext, BuildResult
        from launch_tui.core.model import RunSpec
        ctx = BackendContext(home=Path({str(lp.ctx.home)!r}),
                             artifacts=Path({str(lp.ctx.artifacts)!r}))
        spec = RunSpec.from_dict(json.loads(sys.stdin.read()))
        build = BuildResult(details=spec.environment["build"])
        asyncio.run(LocalProcessBackend(ctx).submit(spec, build))
        print("submitted", flush=True)
        import time; time.sleep(120)
        """
    )
    agent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        agent_code,
        cwd=PROJECT_ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert agent.stdin and agent.stdout
        agent.stdin.write(json.dumps(built.to_dict()).encode())
        agent.stdin.close()
        line = await asyncio.wait_for(agent.stdout.readline(), 30)
        assert line.strip() == b"submitted"
        await lp.wait_for_output(lp.backend._handle(spec.run_id), "tick 2")
    finally:
        agent.kill()
        await agent.wait()

    fresh = LocalProcessBackend(lp.ctx)
    handle = await fresh.find(spec.run_id)
    assert handle is not None
    assert (await fresh.status(handle)).state == RunState.RUNNING
    chunks = await lp.logs(handle)
    assert [c.text for c in chunks] == [f"tick {i}" for i in range(30)]
    assert (await fresh.status(handle)).state == RunState.FINISHED


async def test_a_run_whose_supervisor_and_job_were_killed_is_crashed(lp: Harness) -> None:
    handle = await lp.start(script("import time\nprint('ready')\ntime.sleep(60)"), "python main.py")
    await lp.wait_for_output(handle, "ready")
    sup = lp.record(handle.run_id, rd.SUPERVISOR)
    job = lp.record(handle.run_id, rd.JOB)
    os.kill(sup["pid"], signal.SIGKILL)
    os.killpg(job["pgid"], signal.SIGKILL)

    status = await lp.wait(handle, within=10)
    assert status.state == RunState.CRASHED
    assert status.reason == "the job's process vanished without recording an exit status"
    # Following the logs of a crashed run ends instead of waiting forever.
    assert [c.text for c in await lp.logs(handle, within=10)] == ["ready"]


async def test_find_knows_only_submitted_runs(lp: Harness) -> None:
    assert await lp.backend.find("never-submitted") is None
    with pytest.raises(BackendError, match="not a valid run id"):
        await lp.backend.find("../escape")


async def test_long_lines_and_undecodable_bytes_survive(lp: Harness) -> None:
    handle = await lp.start(
        script(
            """
            import sys
            out = sys.stdout.buffer
            out.write(b"bad \\xff\\xfe bytes\\n")
            out.write("caf\\u00e9 \\u2603\\n".encode())
            out.write(b"x" * 300_000 + b"\\n")
            out.write(b"no newline at the end")
            """
        ),
        "python main.py",
    )
    chunks = await lp.logs(handle)
    assert (await lp.wait(handle)).state == RunState.FINISHED
    texts = [c.text for c in chunks]
    assert texts[0] == "bad \ufffd\ufffd bytes"
    assert texts[1] == "caf\u00e9 \u2603"
    # The long line arrives split into bounded pieces that add up to it.
    pieces = texts[2:-1]
    assert len(pieces) > 1 and all(len(p) <= sv.MAX_LINE_CHARS for p in pieces)
    assert "".join(pieces) == "x" * 300_000
    assert texts[-1] == "no newline at the end"


async def test_twenty_megabytes_of_output_stream_in_bounded_memory(lp: Harness) -> None:
    lines, width = 200_000, 100
    handle = await lp.start(
        script(
            f"""
            import sys
            w = sys.stdout.write
            for i in range({lines}):
                w(f"{{i:08d}} " + "y" * {width - 10} + "\\n")
            """
        ),
        "python main.py",
    )
    tracemalloc.start()
    try:
        count, total, last = 0, 0, ""
        async for chunk in lp.backend.logs(handle, follow=True):
            count += 1
            total += len(chunk.text) + 1
            last = chunk.text
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (await lp.wait(handle)).state == RunState.FINISHED
    assert count == lines
    assert total == lines * width  # 20 MB went through
    assert last.startswith(f"{lines - 1:08d} ")
    # Reading never holds the file: a generous bound far below the 20 MB streamed.
    assert peak < 8 * 1024 * 1024, f"peak traced memory {peak / 1e6:.1f} MB"
