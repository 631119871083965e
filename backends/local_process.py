"""The local-process target: jobs run as plain processes on the agent's machine.

`LocalEnvBuilder` makes each run a fresh working copy of its source (a code
snapshot or a git checkout) under `<home>/work/<run_id>/src` and, when the job
names a requirements file, a cached virtualenv (see `venv_cache`).

`LocalProcessBackend` starts each run under a small supervisor process
(`local_supervisor`) in its own session, so a job outlives its agent. The
supervisor keeps everything in the run directory; this module only reads those
files and sends signals, which is what lets a restarted agent find its runs
and carry on (`find`, `status`, `logs`, `cancel` need no in-memory state).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from launch_tui.backends import local_supervisor as sv
from launch_tui.backends.schemas import LOCAL_PROCESS
from launch_tui.backends.venv_cache import FileLock, ensure_venv, venv_python
from launch_tui.core import sdk
from launch_tui.core.backend import (
    NOTHING_BUILT,
    BackendBase,
    BackendContext,
    BuildLog,
    BuildResult,
    LogChunk,
    RunHandle,
    RunStatus,
)
from launch_tui.core.errors import BackendError, BuildError
from launch_tui.core.model import JobKind, LogStream, RunSpec, RunState

NAME = "local-process"
BUILD_RECORD = "build.json"
SUPERVISOR_LOG = "supervisor.log"
SUBMIT_LOCK = "submit.lock"
PYTHON_NAMES = ("python", "python3")

POLL_S = 0.1  # how often logs() looks for new output while a run is alive
START_TIMEOUT_S = 30.0  # how long submit waits for the supervisor to take the run
# How long cancel waits, after its SIGKILL, for the supervisor to record the exit.
CANCEL_SETTLE_S = 15.0
_READ_CHUNK = 64 * 1024
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def run_dir_for(ctx: BackendContext, run_id: str) -> Path:
    # The run id becomes a directory name; anything path-like is refused.
    if not _RUN_ID.match(run_id) or ".." in run_id:
        raise BackendError(f"run: '{run_id}' is not a valid run id for a local-process run.")
    return ctx.work_dir / run_id


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


# ---------------------------------------------------------------- builder


def _copy_writable(src: str, dst: str) -> str:
    """Copy one file; the working copy is the run's to change even if the snapshot is read-only."""
    shutil.copyfile(src, dst)
    mode = stat.S_IMODE(os.stat(src).st_mode)
    os.chmod(dst, mode | stat.S_IWUSR | stat.S_IRUSR)
    return dst


def _copy_snapshot(snapshot: Path, dest: Path) -> None:
    shutil.copytree(snapshot, dest, symlinks=True, copy_function=_copy_writable)
    for dirpath, _dirs, _files in os.walk(dest):
        os.chmod(dirpath, stat.S_IMODE(os.stat(dirpath).st_mode) | stat.S_IRWXU)


class LocalEnvBuilder:
    """Working copy + (cached) virtualenv for a run on the local-process target."""

    name = NAME

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx

    async def build(self, spec: RunSpec, log: BuildLog) -> BuildResult:
        if spec.kind == JobKind.IMAGE:
            raise BuildError(
                "job: image jobs cannot run on the local-process target; use a docker queue."
            )
        run_dir = run_dir_for(self.ctx, spec.run_id)
        if (run_dir / sv.SUPERVISOR).exists():
            # Already started (an agent restarted mid-run): its working copy is
            # in use and must not be replaced.
            previous = _read_json(run_dir / BUILD_RECORD)
            if previous is not None:
                return BuildResult(
                    cached=True, commit=previous.get("commit"), details=previous["details"]
                )
            raise BuildError(f"run: {spec.run_id} has already been started on this machine.")
        src = run_dir / "src"
        if src.exists():
            await asyncio.to_thread(shutil.rmtree, src)
        await asyncio.to_thread(run_dir.mkdir, mode=0o700, parents=True, exist_ok=True)

        commit = await self._fetch_source(spec, src, log)

        req_name = spec.environment.get("requirements")
        python = Path(sys.executable)
        venv: Path | None = None
        cached = True
        if req_name:
            req_file = self._requirements_file(src, str(req_name))
            venv, cached = await ensure_venv(
                self.ctx.home / "venvs", req_file, src.resolve(), str(req_name), log
            )
            python = venv_python(venv)
        details: dict[str, Any] = {
            "python": str(python),
            "workdir": str(src),
            "venv": str(venv) if venv else None,
        }
        sv.write_json_atomic(run_dir / BUILD_RECORD, {"commit": commit, "details": details})
        return BuildResult(cached=cached, commit=commit, details=details)

    async def _fetch_source(self, spec: RunSpec, src: Path, log: BuildLog) -> str | None:
        if spec.kind == JobKind.CODE:
            digest = str(spec.source.get("snapshot", ""))
            snapshot = self.ctx.snapshot_dir(digest) if digest else None
            if snapshot is None or not snapshot.is_dir():
                raise BuildError(
                    f"job: the code snapshot '{digest[:12]}' of {spec.job}:v{spec.version} "
                    "is missing from the artifact store."
                )
            await log(f"source: copying code snapshot {digest[:12]}")
            await asyncio.to_thread(_copy_snapshot, snapshot, src)
            return None
        if spec.kind == JobKind.GIT:
            from launch_tui.backends.git_source import checkout  # only git jobs need it

            ref = spec.source.get("ref") or None  # "" means the remote's default branch
            commit = await checkout(str(spec.source["url"]), ref, src, log)
            await log(f"source: checked out {commit[:12]}")
            return commit
        raise BuildError(f"job: jobs of kind '{spec.kind}' cannot run on the local-process target.")

    @staticmethod
    def _requirements_file(src: Path, name: str) -> Path:
        root = src.resolve()
        path = (root / name).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise BuildError(
                f"environment: the requirements file '{name}' is not in the job's source."
            )
        return path


# ---------------------------------------------------------------- backend


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


def _exit_status(record: dict[str, Any]) -> RunStatus:
    code = record.get("exit_code")
    if record.get("cancelled"):
        return RunStatus(RunState.STOPPED, "cancelled", code)
    if record.get("error"):
        return RunStatus(RunState.FAILED, str(record["error"]), code)
    if record.get("timed_out"):
        return RunStatus(RunState.FAILED, f"timed out after {record.get('timeout_s')} s", code)
    if record.get("signal"):
        try:
            name = signal.Signals(int(record["signal"])).name
        except ValueError:
            name = str(record["signal"])
        return RunStatus(RunState.FAILED, f"killed by signal {name}", code)
    if code == 0:
        return RunStatus(RunState.FINISHED, None, 0)
    return RunStatus(RunState.FAILED, f"exit code {code}", code)


_VANISHED = "the job's process vanished without recording an exit status"


def _status_of(run_dir: Path) -> RunStatus:
    """The run's state from its files and /proc; never blocks on anything but local reads."""
    record = _read_json(run_dir / sv.EXIT)
    if record is not None:
        return _exit_status(record)
    sup = _read_json(run_dir / sv.SUPERVISOR)
    if sup is None:
        return RunStatus(RunState.CRASHED, "no supervisor was started for this run")
    job = _read_json(run_dir / sv.JOB)
    if job is not None and sv.is_alive(int(job["pid"]), job.get("start_time")):
        return RunStatus(RunState.RUNNING)
    if sv.is_alive(int(sup["pid"]), sup.get("start_time")):
        # Before the job starts, or while the supervisor records its exit.
        return RunStatus(RunState.STARTING if job is None else RunState.RUNNING)
    record = _read_json(run_dir / sv.EXIT)  # it may have been written meanwhile
    if record is not None:
        return _exit_status(record)
    if (run_dir / sv.CANCEL).exists():
        return RunStatus(RunState.STOPPED, f"cancelled; {_VANISHED}")
    return RunStatus(RunState.CRASHED, _VANISHED)


class _OutputReader:
    """Reads output.jsonl in bounded chunks, remembering where it stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: Any = None
        self.partial = b""

    def read_batch(self) -> list[LogChunk]:
        """The next complete lines (at most about one chunk's worth); [] at the current end."""
        if self.file is None:
            try:
                self.file = open(self.path, "rb", buffering=0)
            except FileNotFoundError:
                return []
        while True:
            data = self.file.read(_READ_CHUNK)
            if not data:
                return []
            *lines, self.partial = (self.partial + data).split(b"\n")
            if lines:
                return [_parse_line(line) for line in lines if line]

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _parse_line(line: bytes) -> LogChunk:
    try:
        rec = json.loads(line)
        return LogChunk(LogStream(rec["stream"]), str(rec["text"]), float(rec["ts"]))
    except (ValueError, KeyError, TypeError):
        return LogChunk(LogStream.STDOUT, line.decode("utf-8", "replace"), time.time())


class LocalProcessBackend(BackendBase):
    """Runs jobs as supervised local processes; all state lives in `<home>/work/<run_id>`."""

    name = NAME
    resource_schema: dict[str, Any] = LOCAL_PROCESS

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx
        # How long a timed-out job gets between SIGTERM and SIGKILL.
        self.timeout_grace_s = float(ctx.settings.get("timeout_grace_s", 10.0))

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
            if (run_dir / sv.SUPERVISOR).exists():
                return self._handle(spec.run_id)
            launch = await asyncio.to_thread(self._launch_record, spec, build)
            await asyncio.to_thread(sv.write_json_atomic, run_dir / sv.LAUNCH, launch)
            proc = await asyncio.to_thread(self._spawn_supervisor, run_dir)
            await self._wait_supervised(run_dir, proc)
            return self._handle(spec.run_id)
        finally:
            lock.release()

    def _launch_record(self, spec: RunSpec, result: BuildResult) -> dict[str, Any]:
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

        env = dict(os.environ)
        # Piped output is block-buffered by default; live logs need it unbuffered.
        env["PYTHONUNBUFFERED"] = "1"
        if build.get("venv"):
            venv = str(build["venv"])
            env["VIRTUAL_ENV"] = venv
            env["PATH"] = os.pathsep.join(filter(None, [f"{venv}/bin", env.get("PATH")]))
            env.pop("PYTHONHOME", None)
        env.update({k: str(v) for k, v in spec.env.items()})
        env.update({k: str(v) for k, v in (spec.resource_args.get("env") or {}).items()})
        # The in-job helper (`import launch_tui_sdk`) comes first on the job's path;
        # a PYTHONPATH the job itself sets follows it, the agent's own does not.
        job_path = spec.resource_args.get("env", {}).get("PYTHONPATH") or spec.env.get("PYTHONPATH")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self._sdk_dir()), job_path]))

        _check_entrypoint(argv, entrypoint, cwd, env.get("PATH", os.defpath))
        timeout_s = spec.resource_args.get("timeout_s")
        return {
            "run_id": spec.run_id,
            "entrypoint": entrypoint,
            "argv": argv,
            "cwd": str(cwd),
            "env": env,
            "timeout_s": int(timeout_s) if timeout_s else None,
            "timeout_grace_s": self.timeout_grace_s,
            "submitted_at": time.time(),
        }

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

    def _spawn_supervisor(self, run_dir: Path) -> subprocess.Popen[bytes]:
        # The supervisor is a module of the installed package; the job's own
        # environment comes from launch.json, not from here.
        env = dict(os.environ)
        with open(run_dir / SUPERVISOR_LOG, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "launch_tui.backends.local_supervisor", str(run_dir)],
                cwd=run_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                # Its own session: no signal aimed at the agent (Ctrl-C, the
                # agent's process group being killed) reaches the job.
                start_new_session=True,
                close_fds=True,
            )
        # Reap it when it ends so no zombie lingers while the agent lives.
        threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
        return proc

    async def _wait_supervised(self, run_dir: Path, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (run_dir / sv.SUPERVISOR).exists():
            code = proc.returncode
            if code not in (None, 0):
                tail = _tail_text(run_dir / SUPERVISOR_LOG)
                raise BackendError(
                    f"run: the local-process supervisor exited with code {code}: {tail}"
                )
            if time.monotonic() > deadline:
                # Not left to start the job later behind the back of a failed submit.
                proc.kill()
                raise BackendError(
                    f"run: the local-process supervisor did not start within {START_TIMEOUT_S:g} s."
                )
            await asyncio.sleep(0.02)

    # -- status, find

    async def status(self, handle: RunHandle) -> RunStatus:
        return await asyncio.to_thread(_status_of, run_dir_for(self.ctx, handle.run_id))

    async def find(self, run_id: str) -> RunHandle | None:
        run_dir = run_dir_for(self.ctx, run_id)
        started = await asyncio.to_thread((run_dir / sv.SUPERVISOR).exists)
        return self._handle(run_id) if started else None

    # -- logs

    async def logs(self, handle: RunHandle, follow: bool = True) -> AsyncIterator[LogChunk]:
        run_dir = run_dir_for(self.ctx, handle.run_id)
        reader = _OutputReader(run_dir / sv.OUTPUT)
        try:
            while True:
                # Decide before draining: output written before the run ended
                # is then certainly read before we stop.
                ended = not follow or (await asyncio.to_thread(_status_of, run_dir)).state.terminal
                while batch := await asyncio.to_thread(reader.read_batch):
                    for chunk in batch:
                        yield chunk
                if ended:
                    return
                await asyncio.sleep(POLL_S)
        finally:
            reader.close()

    # -- cancel

    async def cancel(self, handle: RunHandle, grace_s: float) -> None:
        """SIGTERM the job's process group, SIGKILL it after grace_s, wait for the exit record.

        Returns once the run has ended: at most about grace_s plus a few seconds.
        """
        run_dir = run_dir_for(self.ctx, handle.run_id)
        if (await asyncio.to_thread(_status_of, run_dir)).state.terminal:
            return  # ended already (or never started): nothing to stop
        if not (run_dir / sv.CANCEL).exists():
            # Written before any signal, so the supervisor records the exit as cancelled.
            await asyncio.to_thread(
                sv.write_json_atomic,
                run_dir / sv.CANCEL,
                {"requested_at": time.time(), "grace_s": grace_s},
            )
        kill_at = time.monotonic() + max(0.0, grace_s)
        give_up_at = kill_at + CANCEL_SETTLE_S
        sent: set[int] = set()
        while time.monotonic() < give_up_at:
            if (run_dir / sv.EXIT).exists():
                return
            job = _read_json(run_dir / sv.JOB)
            if job is not None and sv.is_alive(int(job["pid"]), job.get("start_time")):
                sig = signal.SIGKILL if time.monotonic() >= kill_at else signal.SIGTERM
                if sig not in sent:
                    sent.add(sig)
                    try:
                        os.killpg(int(job["pgid"]), sig)
                    except ProcessLookupError:
                        pass
            elif (await asyncio.to_thread(_status_of, run_dir)).state.terminal:
                return  # nothing left running (e.g. the supervisor had vanished)
            await asyncio.sleep(0.05)
        raise BackendError(
            f"cancel: run {handle.run_id} did not stop within {grace_s + CANCEL_SETTLE_S:g} s."
        )


def _tail_text(path: Path, limit: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            text = f.read().decode("utf-8", "replace").strip()
    except OSError:
        return "no output"
    return " | ".join(text.splitlines()[-5:]) or "no output"
