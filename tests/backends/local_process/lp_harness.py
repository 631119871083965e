"""Test harness for the local-process target: a throwaway home, snapshots, specs, real processes.

Every process a test starts is a supervisor or a job recorded in the test's own
run directories, or the home's fork server (recorded under <home>/forkserver);
the `lp` fixture kills whatever is still alive afterwards, by pid.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import io
import json
import os
import signal
import time
import zipfile
from pathlib import Path
from typing import Any

from launch_tui.backends import local_rundir as rd
from launch_tui.backends.local_forkserver import running_servers
from launch_tui.backends.local_process import LocalEnvBuilder, LocalProcessBackend
from launch_tui.core.backend import BackendContext, BuildResult, LogChunk, RunHandle, RunStatus
from launch_tui.core.model import JobKind, RunSpec


class Harness:
    """Builds specs the way the agent will and drives a backend with them."""

    def __init__(self, root: Path) -> None:
        self.ctx = BackendContext(
            home=root / "home",
            artifacts=root / "artifacts",
            # A timed-out job gets 1 s between SIGTERM and SIGKILL, to keep tests short.
            settings={"timeout_grace_s": 1.0},
        )
        self.backend = LocalProcessBackend(self.ctx)
        self.builder = LocalEnvBuilder(self.ctx)
        self.build_log: list[str] = []
        self._runs = 0

    def snapshot(self, files: dict[str, str | bytes]) -> str:
        """Store `files` as a content-addressed code snapshot; return its digest."""
        h = hashlib.sha256()
        for name in sorted(files):
            data = files[name]
            h.update(name.encode() + b"\0" + (data.encode() if isinstance(data, str) else data))
        digest = h.hexdigest()
        root = self.ctx.snapshot_dir(digest)
        for name, data in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, str):
                path.write_text(data)
            else:
                path.write_bytes(data)
        return digest

    def spec(
        self,
        entrypoint: str | list[str],
        *,
        kind: JobKind = JobKind.CODE,
        source: dict[str, Any] | None = None,
        requirements: str | None = None,
        env: dict[str, str] | None = None,
        resource_args: dict[str, Any] | None = None,
        run_id: str | None = None,
        queue_config: dict[str, Any] | None = None,
    ) -> RunSpec:
        self._runs += 1
        argv = entrypoint.split() if isinstance(entrypoint, str) else entrypoint
        return RunSpec(
            run_id=run_id or f"run-{self._runs}",
            project="proj",
            queue="local",
            resource="local-process",
            job="job",
            version=0,
            kind=kind,
            entrypoint=tuple(argv),
            config={},
            resource_args=resource_args or {},
            env=env or {},
            source=source or {},
            environment={"requirements": requirements},
            job_digest="0" * 64,
            queue_config=queue_config or {},
        )

    async def log(self, line: str) -> None:
        self.build_log.append(line)

    async def build(self, spec: RunSpec) -> tuple[RunSpec, BuildResult]:
        """Build, then hand the result to submit the way the agent does."""
        result = await self.builder.build(spec, self.log)
        environment = {**spec.environment, "build": result.details}
        return dataclasses.replace(spec, environment=environment), result

    async def start(
        self, files: dict[str, str | bytes], entrypoint: str | list[str], **kw: Any
    ) -> RunHandle:
        spec = self.spec(entrypoint, source={"snapshot": self.snapshot(files)}, **kw)
        built, result = await self.build(spec)
        return await self.backend.submit(built, result)

    async def wait(self, handle: RunHandle, within: float = 30.0) -> RunStatus:
        deadline = time.monotonic() + within
        while True:
            status = await self.backend.status(handle)
            if status.state.terminal:
                return status
            assert time.monotonic() < deadline, f"run still {status.state} after {within}s"
            await asyncio.sleep(0.05)

    async def wait_for_output(self, handle: RunHandle, text: str, within: float = 15.0) -> None:
        """Until the job has printed `text` (a readiness line)."""
        path = self.run_dir(handle.run_id) / rd.OUTPUT
        deadline = time.monotonic() + within
        while not (path.exists() and text in path.read_text(errors="replace")):
            assert time.monotonic() < deadline, f"job never printed {text!r}"
            await asyncio.sleep(0.05)

    async def logs(self, handle: RunHandle, within: float = 30.0) -> list[LogChunk]:
        async def collect() -> list[LogChunk]:
            return [c async for c in self.backend.logs(handle, follow=True)]

        return await asyncio.wait_for(collect(), within)

    @staticmethod
    def wheel(name: str = "tinypkg", version: str = "0.1", value: str = "42") -> tuple[str, bytes]:
        """A minimal pure-Python wheel (file name, bytes): pip installs it offline, no builder."""
        dist_info = f"{name}-{version}.dist-info"
        files = {
            f"{name}/__init__.py": f"VALUE = {value!r}\n",
            f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
            f"{dist_info}/WHEEL": (
                "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
            ),
        }
        record = []
        for path, text in files.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(data)}")
        record.append(f"{dist_info}/RECORD,,")
        files[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for path, text in files.items():
                zf.writestr(path, text)
        return f"{name}-{version}-py3-none-any.whl", buf.getvalue()

    def run_dir(self, run_id: str) -> Path:
        return self.ctx.work_dir / run_id

    def output_texts(self, run_id: str) -> list[str]:
        """The lines the job printed so far, as the supervisor recorded them."""
        path = self.run_dir(run_id) / rd.OUTPUT
        return [json.loads(line)["text"] for line in path.read_text().splitlines() if line]

    def record(self, run_id: str, name: str) -> dict[str, Any]:
        return json.loads((self.run_dir(run_id) / name).read_text())

    def kill_leftovers(self) -> None:
        for pid, _ in running_servers(self.ctx.home):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not self.ctx.work_dir.exists():
            return
        for run_dir in self.ctx.work_dir.iterdir():
            for name in (rd.JOB, rd.SUPERVISOR):
                path = run_dir / name
                if not path.exists():
                    continue
                rec = json.loads(path.read_text())
                if rd.is_alive(rec["pid"], rec.get("start_time")):
                    try:
                        if name == rd.JOB:
                            os.killpg(rec["pgid"], signal.SIGKILL)
                        else:
                            os.kill(rec["pid"], signal.SIGKILL)
                    except ProcessLookupError:
                        pass
