"""The local-process target: jobs run as plain processes on the agent's machine.

`LocalProcessBackend` starts each run under a small supervisor process
(`local_supervisor`) in its own session, so a job outlives its agent. The
supervisor keeps everything in the run directory; this module only reads those
files and sends signals, which is what lets a restarted agent find its runs
and carry on (`find`, `status`, `watch`, `logs`, `cancel` need no in-memory state).

Nothing here polls while the target can push (see `local_watch`): `watch`,
`logs`, `cancel` and `submit` wait on their run directory's inotify watch and
on the pidfd of the process whose end would be the next change (the
supervisor, or an orphaned job once its supervisor is gone). Each wake re-reads
the few small files concerned in the event loop itself, without a thread.
Where inotify or pidfds are missing they poll with back-off.

Supervisors start through the home's fork server, else directly (`local_spawn`).
The job's environment is explicit (`core.jobenv`): the agent's variables that
the allow-list lets through (extended by the queue's `inherit_env`), the run's
and the queue's variables, the resource args' `env`, and what this backend
adds. Never the agent's whole environment, which holds the store URL and
database passwords.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from launch_tui.backends import local_rundir as rd
from launch_tui.backends.local_build import NAME, LocalEnvBuilder, read_json, run_dir_for
from launch_tui.backends.local_forkserver import IDLE_S, SUPERVISOR_LOG
from launch_tui.backends.local_priority import DEFAULT_JOB_NICE
from launch_tui.backends.local_runstate import (
    KEEP_AT_END,
    KEEP_LIVE,
    OutputReader,
    Process,
    Waiter,
    alive,
    read_state,
)
from launch_tui.backends.local_spawn import SupervisorStarter
from launch_tui.backends.local_watch import EVERYTHING, Backoff
from launch_tui.backends.schemas import LOCAL_PROCESS
from launch_tui.backends.venv_cache import FileLock
from launch_tui.core import jobenv, sdk
from launch_tui.core.backend import (
    NOTHING_BUILT,
    BackendBase,
    BackendContext,
    BuildResult,
    Lagging,
    LogChunk,
    RunHandle,
    RunStatus,
    SkippedLines,
)
from launch_tui.core.errors import BackendError
from launch_tui.core.model import RunSpec

__all__ = ["LocalEnvBuilder", "LocalProcessBackend", "run_dir_for"]

SUBMIT_LOCK = "submit.lock"
PYTHON_NAMES = ("python", "python3")

START_TIMEOUT_S = 30.0  # how long submit waits for the supervisor to take the run
# How long cancel waits, after its SIGKILL, for the supervisor to record the exit.
CANCEL_SETTLE_S = 15.0
# The files of the run directory each kind of waiter is woken for.
_STATE_FILES = frozenset({rd.JOB, rd.EXIT})
_OUTPUT_FILES = frozenset({rd.OUTPUT, rd.EXIT})
_START_FILES = frozenset({rd.SUPERVISOR})


def _script_of(args: list[str]) -> str | None:
    """The script a `python ...` command line runs, or None for -m/-c/stdin."""
    skip_next = False
    for arg in args:
        if skip_next:
            skip_next = False
            continue
        if arg in ("-m", "-c", "-"):
            return None
        if arg in ("-W", "-X", "--check-hash-based-pycs"):
            skip_next = True
            continue
        if arg.startswith("-"):
            continue
        return arg
    return None


def _check_entrypoint(argv: list[str], entrypoint: list[str], cwd: Path, path_var: str) -> None:
    """Refuse at submit what could not start, with a sentence the user can act on."""
    shown = " ".join(entrypoint)
    exe = argv[0]
    if "/" in exe:
        target = cwd / exe
        if not target.is_file():
            raise BackendError(f"entrypoint: '{shown}' cannot start: {exe} not found.")
        if not os.access(target, os.X_OK):
            raise BackendError(f"entrypoint: '{shown}' cannot start: {exe} is not executable.")
    elif shutil.which(exe, path=path_var) is None:
        raise BackendError(f"entrypoint: '{shown}' cannot start: {exe} not found on PATH.")
    if entrypoint[0] in PYTHON_NAMES:
        script = _script_of(argv[1:])
        if script is not None and not (cwd / script).is_file():
            raise BackendError(
                f"entrypoint: '{shown}' cannot start: {script} not found in the job's source."
            )


class LocalProcessBackend(BackendBase):
    """Runs jobs as supervised local processes; all state lives in `<home>/work/<run_id>`."""

    name = NAME
    resource_schema: dict[str, Any] = LOCAL_PROCESS
    # The whole output stays in output.jsonl and passing over it costs two reads:
    # the agent need not read a run whose lines it would only count.
    skips_lagging_output = True

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx
        # How long a timed-out job gets between SIGTERM and SIGKILL.
        self.timeout_grace_s = float(ctx.settings.get("timeout_grace_s", 10.0))
        self._starter = SupervisorStarter(
            ctx.home,
            use_forkserver=bool(ctx.settings.get("forkserver", True)),
            idle_s=float(ctx.settings.get("forkserver_idle_s", IDLE_S)),
        )

    def _handle(self, run_id: str) -> RunHandle:
        return RunHandle(NAME, run_id, {"run_dir": str(run_dir_for(self.ctx, run_id))})

    # -- submit

    async def submit(self, spec: RunSpec, build: BuildResult = NOTHING_BUILT) -> RunHandle:
        run_dir = run_dir_for(self.ctx, spec.run_id)
        await asyncio.to_thread(run_dir.mkdir, mode=0o700, parents=True, exist_ok=True)
        # One submit at a time per run, across agents and processes.
        lock = FileLock(run_dir / SUBMIT_LOCK)
        await lock.acquire()
        try:
            if (run_dir / rd.SUPERVISOR).exists():
                return self._handle(spec.run_id)
            # In the loop's thread: submits of different runs in worker threads
            # would race on the file _sdk_dir() renames into place.
            sdk_dir = self._sdk_dir()
            await asyncio.to_thread(self._write_launch_record, run_dir, spec, build, sdk_dir)
            # Degraded (no inotify), a submit looks often: it is on the dispatch path.
            with Waiter(run_dir, _START_FILES, Backoff(0.02, 0.5)) as waiter:
                pid = await self._starter.start(run_dir)
                await self._wait_supervised(waiter, (pid, rd.proc_start_time(pid)))
            return self._handle(spec.run_id)
        finally:
            lock.release()

    def _write_launch_record(self, run_dir: Path, spec: RunSpec, result: BuildResult,
                             sdk_dir: Path) -> None:
        """launch.json, in one thread call: it is on the dispatch path."""
        # Not durable: only the supervisor reads it, at once (see write_json_atomic).
        rd.write_json_atomic(run_dir / rd.LAUNCH, self._launch_record(spec, result, sdk_dir),
                             durable=False)

    def _launch_record(
        self, spec: RunSpec, result: BuildResult, sdk_dir: Path
    ) -> dict[str, Any]:
        build = result.details
        if not build.get("python") or not build.get("workdir"):
            raise BackendError(
                f"environment: run {spec.run_id} was not built for local-process "
                "(its build result names no python and working copy)."
            )
        entrypoint = [str(a) for a in spec.entrypoint]
        if not entrypoint:
            raise BackendError("entrypoint: the job has no entrypoint to run.")
        argv = list(entrypoint)
        if argv[0] in PYTHON_NAMES:
            argv[0] = str(build["python"])
        cwd = Path(build["workdir"])
        if not cwd.is_dir():
            raise BackendError(
                f"environment: the working copy {cwd} of run {spec.run_id} does not exist."
            )
        env = self._job_env(spec, build, sdk_dir)
        _check_entrypoint(argv, entrypoint, cwd, env.get("PATH", os.defpath))
        timeout_s = spec.resource_args.get("timeout_s")
        return {
            "run_id": spec.run_id,
            "entrypoint": entrypoint,
            "argv": argv,
            "cwd": str(cwd),
            "env": env,
            "timeout_s": int(timeout_s) if timeout_s else None,
            "nice": int(spec.resource_args.get("nice", DEFAULT_JOB_NICE)),
            "timeout_grace_s": self.timeout_grace_s,
            "submitted_at": time.time(),
        }

    def _job_env(self, spec: RunSpec, build: dict[str, Any], sdk_dir: Path) -> dict[str, str]:
        """The job's whole environment, name by name (see the module docstring)."""
        inherit = spec.queue_config.get("inherit_env") or ()
        if isinstance(inherit, str):
            inherit = (inherit,)
        env = jobenv.inherited(os.environ, [str(name) for name in inherit])
        # Piped output is block-buffered by default; live logs need it unbuffered.
        env["PYTHONUNBUFFERED"] = "1"
        if build.get("venv"):
            venv = str(build["venv"])
            env["VIRTUAL_ENV"] = venv
            env["PATH"] = os.pathsep.join(filter(None, [f"{venv}/bin", env.get("PATH")]))
        env.update({k: str(v) for k, v in spec.env.items()})
        env.update({k: str(v) for k, v in (spec.resource_args.get("env") or {}).items()})
        # The in-job helper (`import launch_tui_sdk`) comes first on the job's path;
        # a PYTHONPATH the job itself sets follows it, the agent's own does not.
        job_path = spec.resource_args.get("env", {}).get("PYTHONPATH") or spec.env.get("PYTHONPATH")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(sdk_dir), job_path]))
        return env

    def _sdk_dir(self) -> Path:
        """Install the in-job helper as `launch_tui_sdk.py` under <home>/sdk, once per change."""
        directory = self.ctx.home / "sdk"
        target = directory / "launch_tui_sdk.py"
        source = Path(sdk.__file__).read_bytes()
        if not target.exists() or target.read_bytes() != source:
            directory.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            tmp.write_bytes(source)
            os.replace(tmp, target)
        return directory

    async def _wait_supervised(self, waiter: Waiter, supervisor: Process) -> None:
        """Until the supervisor has taken the run (supervisor.json), told by inotify."""
        run_dir = waiter.run_dir
        waiter.follow(supervisor)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (run_dir / rd.SUPERVISOR).exists():
            left = deadline - time.monotonic()
            if not rd.is_alive(*supervisor):
                if (run_dir / rd.SUPERVISOR).exists():
                    return
                # Ours left, finding the run taken: by a supervisor the fork server
                # forked after we stopped waiting for its answer. Wait for that one.
                holder = await asyncio.to_thread(rd.lock_holder, run_dir)
                if holder is None:
                    tail = _tail_text(run_dir / SUPERVISOR_LOG)
                    raise BackendError(
                        f"run: the local-process supervisor exited before taking the run: {tail}"
                    )
                if holder[0]:
                    supervisor = holder
                    waiter.follow(supervisor)
                elif left > 0:  # it has the lock but has not yet written its pid
                    await waiter.next(min(left, 0.05))
                    continue
            if left <= 0:
                # Not left to start the job later behind the back of a failed submit.
                if rd.is_alive(*supervisor):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(supervisor[0], signal.SIGKILL)
                raise BackendError(
                    f"run: the local-process supervisor did not start within {START_TIMEOUT_S:g} s."
                )
            await waiter.next(left)

    # -- status, watch, find

    async def status(self, handle: RunHandle) -> RunStatus:
        return read_state(run_dir_for(self.ctx, handle.run_id))[0]

    async def watch(self, handle: RunHandle) -> AsyncIterator[RunStatus]:
        """Each change of the run's status, pushed: job.json, exit.json, the supervisor's end."""
        with Waiter(run_dir_for(self.ctx, handle.run_id), _STATE_FILES) as waiter:
            last: RunStatus | None = None
            while True:
                current = waiter.inspect()
                if current != last:
                    yield current
                    last = current
                    waiter.backoff.reset()
                if current.state.terminal:
                    return
                await waiter.next()

    async def find(self, run_id: str, spec: RunSpec | None = None) -> RunHandle | None:
        run_dir = run_dir_for(self.ctx, run_id)
        return self._handle(run_id) if (run_dir / rd.SUPERVISOR).exists() else None

    # -- logs

    def output_location(self, handle: RunHandle) -> str | None:
        return str(run_dir_for(self.ctx, handle.run_id) / rd.OUTPUT)

    async def logs(self, handle: RunHandle, follow: bool = True, *,
                   lagging: Lagging | None = None, stored: int = 0
                   ) -> AsyncIterator[LogChunk | SkippedLines]:
        run_dir = run_dir_for(self.ctx, handle.run_id)
        reader = OutputReader(run_dir / rd.OUTPUT)
        # Re-attaching: pass over what the store has by the records' numbers.
        if stored and (passed := await asyncio.to_thread(reader.seek_record, stored)):
            yield SkippedLines(passed)

        async def skipped(ended: bool) -> SkippedLines | None:
            """While the agent is behind on this run, pass over all but the newest
            output and count it instead of parsing it. Once the run has ended the
            newest 128 KiB are kept (where its last words are), before that a few KiB."""
            keep = KEEP_AT_END if ended else KEEP_LIVE
            if lagging is None or not lagging() or not reader.worth_skipping(keep):
                return None
            count = reader.skip_numbered(keep)
            if count is None:  # an older supervisor's records: count them, in a thread
                count = await asyncio.to_thread(reader.skip_backlog, keep)
            return SkippedLines(count) if count else None

        try:
            if not follow:
                while batch := reader.read_batch():
                    for chunk in batch:
                        yield chunk
                return
            with Waiter(run_dir, _OUTPUT_FILES) as waiter:
                ended = False
                changed = {EVERYTHING}
                while True:
                    if changed - {rd.OUTPUT}:
                        # Decide before draining: output written before the run
                        # ended is then certainly read before we stop.
                        ended = ended or waiter.inspect().state.terminal
                    while True:
                        if skip := await skipped(ended):
                            yield skip
                        if not (batch := reader.read_batch()):
                            break
                        waiter.backoff.reset()
                        for chunk in batch:
                            yield chunk
                        await asyncio.sleep(0)  # a long backlog does not hold the loop
                    if ended:
                        return
                    changed = await waiter.next()
        finally:
            reader.close()

    # -- cancel

    async def cancel(self, handle: RunHandle, grace_s: float) -> None:
        """SIGTERM the job's process group, SIGKILL it after grace_s, wait for the exit record.

        Returns once the run has ended: at most about grace_s plus a few seconds.
        """
        run_dir = run_dir_for(self.ctx, handle.run_id)
        with Waiter(run_dir, _STATE_FILES) as waiter:
            if waiter.inspect().state.terminal:
                return  # ended already (or never started): nothing to stop
            if not (run_dir / rd.CANCEL).exists():
                # Written before any signal, so the supervisor records the exit as cancelled.
                await asyncio.to_thread(
                    rd.write_json_atomic,
                    run_dir / rd.CANCEL,
                    {"requested_at": time.time(), "grace_s": grace_s},
                )
            kill_at = time.monotonic() + max(0.0, grace_s)
            give_up_at = kill_at + CANCEL_SETTLE_S
            sent: set[int] = set()
            while not waiter.inspect().state.terminal:
                now = time.monotonic()
                if now >= give_up_at:
                    raise BackendError(f"cancel: run {handle.run_id} did not stop within "
                                       f"{grace_s + CANCEL_SETTLE_S:g} s.")
                job = read_json(run_dir / rd.JOB)
                if alive(job) is not None:
                    assert job is not None
                    sig = signal.SIGKILL if now >= kill_at else signal.SIGTERM
                    if sig not in sent:
                        sent.add(sig)
                        try:
                            os.killpg(int(job["pgid"]), sig)
                        except ProcessLookupError:
                            pass
                # Woken by exit.json, job.json (a job that started meanwhile) or a
                # process's end; else at the moment to SIGKILL.
                until = kill_at if signal.SIGKILL not in sent and now < kill_at else give_up_at
                await waiter.next(until - now)


def _tail_text(path: Path, limit: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            text = f.read().decode("utf-8", "replace").strip()
    except OSError:
        return "no output"
    return " | ".join(text.splitlines()[-5:]) or "no output"
