"""Builder of the local-process target: a working copy and a Python for each run.

`LocalEnvBuilder` makes each run a fresh working copy of its source (a code
snapshot or a git checkout) under `<home>/work/<run_id>/src` and, when the job
names a requirements file, a cached virtualenv (see `venv_cache`). What it made
is recorded in the run directory (build.json), so a restarted agent that finds
the run already started reuses it instead of replacing a working copy in use.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

from launch_tui.backends import local_rundir as rd
from launch_tui.backends.venv_cache import ensure_venv, venv_python
from launch_tui.core.backend import BackendContext, BuildLog, BuildResult
from launch_tui.core.errors import BackendError, BuildError
from launch_tui.core.model import JobKind, RunSpec

NAME = "local-process"
BUILD_RECORD = "build.json"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def run_dir_for(ctx: BackendContext, run_id: str) -> Path:
    # The run id becomes a directory name; anything path-like is refused.
    if not _RUN_ID.match(run_id) or ".." in run_id:
        raise BackendError(f"run: '{run_id}' is not a valid run id for a local-process run.")
    return ctx.work_dir / run_id


def read_json(path: Path) -> dict[str, Any] | None:
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


def _fresh_run_dir(run_dir: Path, src: Path) -> None:
    """The run's directory, without a working copy left by an earlier attempt."""
    if src.exists():
        shutil.rmtree(src)
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


def _fresh_copy(run_dir: Path, src: Path, snapshot: Path) -> None:
    _fresh_run_dir(run_dir, src)
    _copy_snapshot(snapshot, src)


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
        if (run_dir / rd.SUPERVISOR).exists():
            # Already started (an agent restarted mid-run): its working copy is
            # in use and must not be replaced.
            previous = read_json(run_dir / BUILD_RECORD)
            if previous is not None:
                return BuildResult(
                    cached=True, commit=previous.get("commit"), details=previous["details"]
                )
            raise BuildError(f"run: {spec.run_id} has already been started on this machine.")
        src = run_dir / "src"
        commit = await self._fetch_source(spec, run_dir, src, log)

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
        # Not durable (no fsync, see write_json_atomic): a restarted agent reads it, a
        # rebooted machine has no run left to reuse it for.
        await asyncio.to_thread(rd.write_json_atomic, run_dir / BUILD_RECORD,
                                {"commit": commit, "details": details}, durable=False)
        return BuildResult(cached=cached, commit=commit, details=details)

    async def _fetch_source(self, spec: RunSpec, run_dir: Path, src: Path, log: BuildLog
                            ) -> str | None:
        """A fresh working copy in `src` (in `run_dir`, made if need be); the commit
        checked out, for a git job."""
        if spec.kind == JobKind.CODE:
            digest = str(spec.source.get("snapshot", ""))
            snapshot = self.ctx.snapshot_dir(digest) if digest else None
            if snapshot is None or not snapshot.is_dir():
                raise BuildError(
                    f"job: the code snapshot '{digest[:12]}' of {spec.job}:v{spec.version} "
                    "is missing from the artifact store."
                )
            await log(f"source: copying code snapshot {digest[:12]}")
            await asyncio.to_thread(_fresh_copy, run_dir, src, snapshot)  # one hop: dispatch path
            return None
        if spec.kind == JobKind.GIT:
            from launch_tui.backends.git_source import checkout  # only git jobs need it

            await asyncio.to_thread(_fresh_run_dir, run_dir, src)

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
