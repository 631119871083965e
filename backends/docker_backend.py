"""Runs on the local Docker daemon: one container per run, named after the run.

The container is the record: its name (`launch-tui-<run_id>`) makes submission
idempotent and lets a restarted agent find the run again; it is not removed
when the job ends, so the exit code, the OOM flag and the logs survive until
the agent calls `cleanup()`. Whether a run was cancelled is the one fact
Docker does not keep, so `cancel()` leaves a marker file in the run's work dir.

Status is pushed: `watch()` follows the daemon's event stream (one per backend,
see `docker_events`) and reads the container only when it starts following,
when the container dies and when a timeout is due.

The docker SDK is blocking: every call runs in a thread; the event stream and
log streams (`docker_logs`) are each read by a dedicated thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import shutil
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launch_tui.backends.docker_build import connect
from launch_tui.backends.docker_events import ContainerEvents
from launch_tui.backends.docker_logs import container_log, parse_ts
from launch_tui.backends.docker_policy import check_docker_args
from launch_tui.backends.schemas import DOCKER
from launch_tui.core.backend import (
    NOTHING_BUILT,
    BackendBase,
    BackendContext,
    BuildResult,
    Lagging,
    LogChunk,
    RunHandle,
    RunStatus,
)
from launch_tui.core.errors import BackendError
from launch_tui.core.model import JobKind, RunSpec, RunState

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

LABEL_RUN = "launch-tui.run_id"
LABEL_MEMORY = "launch-tui.memory"  # the limit as the user wrote it, for the OOM message
LABEL_TIMEOUT = "launch-tui.timeout_s"  # resource_args.timeout_s, enforced by _look()
TIMEOUT_KILL_GRACE_S = 10.0  # SIGTERM on timeout, SIGKILL this much later
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_.-]")
_ACTIVE = {"created", "running", "paused", "restarting"}


def container_name(run_id: str) -> str:
    return "launch-tui-" + _NAME_BAD.sub("-", run_id)


def _name(handle: RunHandle) -> str:
    return str(handle.data.get("container") or container_name(handle.run_id))


def _human_bytes(n: int) -> str:
    for unit, size in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}b"


def _exit_reason(code: int, error: str, command: list[str]) -> str:
    if code > 128:
        try:
            why = f"killed by signal {signal.Signals(code - 128).name} (exit code {code})"
        except ValueError:
            why = f"exit code {code}"
    elif code in (126, 127) and command:
        # What a shell (and docker-init) return when the program cannot be run.
        problem = "command not found" if code == 127 else "command not executable"
        why = f"exit code {code}: {problem}? (the entrypoint starts with '{command[0]}')"
    else:
        why = f"exit code {code}"
    return f"{why}: {error}" if error else why


class DockerBackend(BackendBase):
    """The `docker` target resource."""

    name = "docker"
    resource_schema: dict[str, Any] = DOCKER

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx
        self._client: docker.DockerClient | None = None
        self._client_lock = asyncio.Lock()
        # One event stream for all of this backend's runs, opened while any is watched.
        self.events = ContainerEvents(self.client, LABEL_RUN)

    async def client(self) -> docker.DockerClient:
        async with self._client_lock:
            if self._client is None:
                self._client = await asyncio.to_thread(connect, BackendError)
            return self._client

    def _marker(self, run_id: str) -> Path:
        return self.ctx.work_dir / run_id / "cancelled"

    def _timeout_marker(self, run_id: str) -> Path:
        return self.ctx.work_dir / run_id / "timed-out"

    async def _get(self, name_or_id: str) -> Container | None:
        import docker

        client = await self.client()
        try:
            return await asyncio.to_thread(client.containers.get, name_or_id)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            raise BackendError(
                f"docker: cannot inspect container {name_or_id}: {_why(exc)}."
            ) from exc

    def _handle(self, run_id: str, container: Container) -> RunHandle:
        return RunHandle(
            backend=self.name,
            run_id=run_id,
            data={"container": container.name, "id": container.id},
        )

    # ---------------------------------------------------------------- submit

    def _create_args(
        self, spec: RunSpec, name: str, build: BuildResult = NOTHING_BUILT
    ) -> dict[str, Any]:
        args = spec.resource_args
        as_given = spec.source.get("image") if spec.kind is JobKind.IMAGE else None
        image = build.image or spec.image or as_given
        if not image:
            raise BackendError(
                "image: the run has no image to start; the docker builder must run first."
            )
        # Core refuses these at enqueue already; checked again for specs made elsewhere.
        check_docker_args(args, spec.queue_config, queue=spec.queue)
        labels = {
            LABEL_RUN: spec.run_id,
            "launch-tui.project": spec.project,
            "launch-tui.queue": spec.queue,
            "launch-tui.job": f"{spec.job}:v{spec.version}",
        }
        kwargs: dict[str, Any] = {
            "image": image,
            "command": list(spec.entrypoint) or None,
            "name": name,
            "labels": labels,
            "environment": {**spec.env, **(args.get("env") or {})},
            # No network unless the queue asks: jobs cannot reach anything by default.
            "network_mode": args.get("network", "none"),
            # docker-init (tini) as PID 1 forwards SIGTERM to the job and reaps zombies.
            "init": True,
            "detach": True,
        }
        if args.get("cpus"):
            kwargs["nano_cpus"] = int(float(args["cpus"]) * 1e9)
        if args.get("memory"):
            kwargs["mem_limit"] = args["memory"]
            kwargs["memswap_limit"] = args["memory"]  # no swap: over the limit means OOM
            labels[LABEL_MEMORY] = str(args["memory"])
        if args.get("timeout_s"):
            labels[LABEL_TIMEOUT] = str(int(args["timeout_s"]))
        if args.get("shm_size"):
            kwargs["shm_size"] = args["shm_size"]
        gpus = args.get("gpus")
        if gpus:
            from docker.types import DeviceRequest

            count = -1 if gpus == "all" else int(gpus)
            kwargs["device_requests"] = [DeviceRequest(count=count, capabilities=[["gpu"]])]
        if args.get("volumes"):
            kwargs["volumes"] = list(args["volumes"])
        return kwargs

    async def submit(self, spec: RunSpec, build: BuildResult = NOTHING_BUILT) -> RunHandle:
        import docker

        name = container_name(spec.run_id)
        kwargs = self._create_args(spec, name, build)  # validate before touching the daemon
        client = await self.client()
        container = await self._get(name)
        if container is None:
            try:
                container = await asyncio.to_thread(client.containers.create, **kwargs)
            except docker.errors.ImageNotFound as exc:
                raise BackendError(
                    f"image: '{kwargs['image']}' is not on the Docker daemon: {_why(exc)}."
                ) from exc
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: a concurrent submit created it first
                    raise BackendError(
                        f"docker: cannot create the container for run {spec.run_id}: {_why(exc)}."
                    ) from exc
                container = await self._get(name)
                if container is None:
                    raise BackendError(
                        f"docker: container {name} vanished while submitting."
                    ) from exc
        if container.status == "created":
            try:
                await asyncio.to_thread(container.start)
            except docker.errors.APIError as exc:
                raise BackendError(f"docker: cannot start the job: {_why(exc)}.") from exc
        return self._handle(spec.run_id, container)

    # ---------------------------------------------------------------- status

    async def status(self, handle: RunHandle) -> RunStatus:
        return (await self._look(handle.run_id, _name(handle)))[0]

    async def watch(self, handle: RunHandle) -> AsyncIterator[RunStatus]:
        """Follows the daemon's events instead of polling: the container is read once
        here, then again only when it dies (exit code, OOM flag, markers), when its
        timeout is due, or when the event stream reconnected (events may be lost)."""
        name = _name(handle)
        async with self.events.subscribe(name) as events:
            # Subscribed before reading: an end in between still arrives as an event.
            current, due = await self._look(handle.run_id, name)
            if current.state.terminal and current.exit_code is not None:
                # It ran and ended before this first look: its process did run, and the
                # run's history says so (a `running` time) like any other run's.
                yield RunStatus(RunState.RUNNING)
            yield current
            while not current.state.terminal:
                event = await events.next(None if due is None else max(0.0, due - time.time()))
                if event and event.action == "start" and LABEL_TIMEOUT not in event.attributes:
                    new = RunStatus(RunState.RUNNING)
                else:  # it died or was removed, its timeout is due, or events were missed
                    new, due = await self._look(handle.run_id, name)
                if new != current:
                    current = new
                    yield current

    async def _look(self, run_id: str, name: str) -> tuple[RunStatus, float | None]:
        """The run's status, and when (epoch seconds) its timeout next needs acting on."""
        container = await self._get(name)
        if container is None:
            gone = f"container {name} is gone (removed outside launch-tui?)"
            return RunStatus(RunState.CRASHED, reason=gone), None
        state: dict[str, Any] = container.attrs.get("State", {})
        status = state.get("Status", "")
        if status == "created":
            return RunStatus(RunState.STARTING, reason="container created, not started yet"), None
        if status in _ACTIVE:
            if status == "running" and container.labels.get(LABEL_TIMEOUT):
                return await self._enforce_timeout(run_id, container, state)
            return RunStatus(RunState.RUNNING), None
        return await self._ended(run_id, container, state), None

    async def _ended(self, run_id: str, container: Container, state: dict[str, Any]) -> RunStatus:
        code = int(state.get("ExitCode", -1))
        error = str(state.get("Error") or "")
        cancelled = await asyncio.to_thread(self._marker(run_id).exists)
        if cancelled:
            return RunStatus(RunState.STOPPED, reason="stopped on request", exit_code=code)
        timed_out = await asyncio.to_thread(self._timeout_marker(run_id).exists)
        if timed_out:
            limit = container.labels.get(LABEL_TIMEOUT)
            return RunStatus(RunState.FAILED, reason=f"timed out after {limit} s", exit_code=code)
        memory = int(container.attrs.get("HostConfig", {}).get("Memory") or 0)
        if state.get("OOMKilled") or (code == 137 and memory):
            limit = container.labels.get(LABEL_MEMORY) or _human_bytes(memory)
            return RunStatus(
                RunState.FAILED,
                reason=f"out of memory: killed by the kernel (memory limit {limit})",
                exit_code=code,
            )
        if code == 0 and not error:
            return RunStatus(RunState.FINISHED, exit_code=0)
        command = container.attrs.get("Config", {}).get("Cmd") or []
        return RunStatus(RunState.FAILED, reason=_exit_reason(code, error, command), exit_code=code)

    async def _enforce_timeout(
        self, run_id: str, container: Container, state: dict[str, Any]
    ) -> tuple[RunStatus, float | None]:
        """resource_args.timeout_s: SIGTERM once the container has run that long,
        SIGKILL TIMEOUT_KILL_GRACE_S later. Enforced while an agent supervises the
        run (`watch` wakes when it is due); the label and the marker file survive
        an agent restart. Also returns when to act next."""
        import docker

        limit = int(container.labels[LABEL_TIMEOUT])
        started = parse_ts(str(state.get("StartedAt") or ""))
        now = time.time()
        if not started or now - started < limit:
            # No start time to count from (should not happen): look again in a second.
            return RunStatus(RunState.RUNNING), (started + limit if started else now + 1.0)
        marker = self._timeout_marker(run_id)
        since = await asyncio.to_thread(_mtime, marker)
        sig, due = None, (since or now) + TIMEOUT_KILL_GRACE_S
        if since is None:
            await asyncio.to_thread(_touch, marker)
            sig = "SIGTERM"
        elif now >= due:
            sig, due = "SIGKILL", now + TIMEOUT_KILL_GRACE_S  # look again if it survives
        if sig is not None:
            try:
                await asyncio.to_thread(container.kill, signal=sig)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: it is not running any more
                    raise BackendError(
                        f"docker: cannot stop container {container.name} after its timeout: "
                        f"{_why(exc)}."
                    ) from exc
        return RunStatus(RunState.RUNNING, reason=f"timed out after {limit} s; stopping"), due

    # ---------------------------------------------------------------- logs

    async def logs(self, handle: RunHandle, follow: bool = True, *,
                   lagging: Lagging | None = None, stored: int = 0
                   ) -> AsyncIterator[LogChunk]:
        """Lines from the start of the run; with follow, until the container exits."""
        # aclosing: a consumer that stops early closes the daemon stream now, not at GC.
        lines = container_log(await self.client(), _name(handle), follow)
        async with contextlib.aclosing(lines):
            async for chunk in lines:
                yield chunk

    # ---------------------------------------------------------------- cancel, find, cleanup

    async def cancel(self, handle: RunHandle, grace_s: float) -> None:
        """SIGTERM to the job (through docker-init), SIGKILL after grace_s."""
        import docker

        name = _name(handle)
        container = await self._get(name)
        if container is None or container.status not in _ACTIVE:
            return  # already over: its own exit status stands
        marker = self._marker(handle.run_id)
        await asyncio.to_thread(_touch, marker)
        try:
            await asyncio.to_thread(container.stop, timeout=max(0, math.ceil(grace_s)))
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            raise BackendError(f"docker: cannot stop container {name}: {_why(exc)}.") from exc

    async def find(self, run_id: str, spec: RunSpec | None = None) -> RunHandle | None:
        container = await self._get(container_name(run_id))
        if container is None:
            return None
        return self._handle(run_id, container)

    async def cleanup(self, handle: RunHandle) -> None:
        """Remove the run's container and marker, once the agent has recorded the result."""
        import docker

        name = _name(handle)
        client = await self.client()
        try:
            await asyncio.to_thread(client.api.remove_container, name, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise BackendError(f"docker: cannot remove container {name}: {_why(exc)}.") from exc
        await asyncio.to_thread(shutil.rmtree, self.ctx.work_dir / handle.run_id, True)


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


def _why(exc: Exception) -> str:
    return str(getattr(exc, "explanation", None) or exc).rstrip(".")
