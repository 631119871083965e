"""Shared harness for the agent tests: a throwaway home with a real SQLite store,
code jobs made from real files, agents in this process or in their own OS
process, bounded waiting, and cleanup of every process a test started.

Cleanup is by pid only: agent processes the harness spawned, the
supervisors and job process groups recorded in the home's run directories
(the local-process backend writes them there), and the home's fork server.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launch_tui.backends import local_rundir as rd
from launch_tui.backends.local_forkserver import running_servers
from launch_tui.core.agent import LaunchAgent
from launch_tui.core.model import TERMINAL_RUN_STATES, ItemState, Run, RunState
from launch_tui.core.service import LaunchService
from launch_tui.core.store.engine import writer_lock_path
from launch_tui.core.store.writelock import describe_process, lock_holder

ROOT = Path(__file__).resolve().parent.parent
ACTIVE_STATES = frozenset(
    {RunState.QUEUED, RunState.BUILDING, RunState.STARTING, RunState.RUNNING, RunState.STOPPING}
)


def script(body: str) -> str:
    return textwrap.dedent(body).lstrip()


def cli_argv(*args: str) -> list[str]:
    """The `launch-tui` console script of this interpreter (or the module when not installed)."""
    exe = Path(sys.executable).with_name("launch-tui")
    if exe.exists():
        return [str(exe), *args]
    return [sys.executable, "-m", "launch_tui.tui.cli", *args]


async def wait_for(
    check: Callable[[], Any], what: str, within: float = 20.0, interval: float = 0.05
) -> Any:
    """Poll `check` (sync or async) until it returns something truthy; return that.

    Fails with `what` (a string, or a callable giving one, for a description of
    what was seen last) after `within` seconds.
    """
    deadline = time.monotonic() + within
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(interval)


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


class AgentProcess:
    """A headless `launch-tui agent` in its own OS process (and session)."""

    def __init__(self, lab: Lab, name: str, queues: Sequence[str], args: Sequence[str],
                 *, home: Path | None = None, prefix: Sequence[str] = ()) -> None:
        self.name = name
        self.log_path = lab.root / f"agent-{name}-{len(lab.processes)}.log"
        argv = [*prefix,
                *cli_argv("agent", *(a for q in queues for a in ("-q", q)), "--name", name, *args)]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv, cwd=lab.root, env=lab.env(home), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        lab.processes.append(self.proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def kill(self) -> None:
        """SIGKILL, and reap it (a zombie would still look alive to a restarted agent)."""
        with contextlib.suppress(ProcessLookupError):
            # The whole session: a prefix such as faketime runs the agent as its child.
            os.killpg(self.proc.pid, signal.SIGKILL)
        await asyncio.to_thread(self.proc.wait, 10)

    async def freeze(self, lab: Lab) -> None:
        """SIGSTOP it at a moment it is not inside a write transaction.

        On SQLite a process stopped inside one holds the store's write lock, and no
        other process can write until it continues (core/store/writelock.py): nothing
        another agent could do about it, so tests of what agents do about a frozen
        one freeze it between writes. On PostgreSQL any moment will do: the server
        ends a session stopped inside a transaction
        (`[store] idle_in_transaction_timeout_s`), tested in test_pg_connect.py.
        """
        for _ in range(1000):
            os.kill(self.pid, signal.SIGSTOP)
            await until_stopped(self.pid)
            if lab.write_lock_holder() != self.pid:
                return
            os.kill(self.pid, signal.SIGCONT)
            await until_stopped(self.pid, False)  # it runs on before the next try
        raise AssertionError("the agent was inside a write transaction 1,000 times in a row")

    async def stop(self, within: float = 30.0) -> int:
        """SIGTERM (a clean stop) and wait for the exit status."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
        return await asyncio.to_thread(self.proc.wait, within)


async def until_stopped(pid: int, stopped: bool = True) -> None:
    """Wait until a process is stopped (SIGSTOP, SIGTSTP), or runs again when
    `stopped` is False, as /proc tells."""
    await wait_for(lambda: describe_process(pid)[1] == stopped,
                   f"process {pid} to {'stop' if stopped else 'continue'}",
                   within=10, interval=0.001)


class Lab:
    """One test's world: a home directory, its store, agents and processes."""

    def __init__(self, root: Path, service: LaunchService, store_url: str | None = None
                 ) -> None:
        self.root = root
        self.home = root / "home"
        self.service = service
        # None: the embedded SQLite store in the home; else a PostgreSQL URL.
        self.store_url = store_url
        self.agents: list[LaunchAgent] = []
        self.homes: list[Path] = [self.home]  # the lab's own and other "machines'" homes
        self.processes: list[subprocess.Popen[bytes]] = []
        self._jobs = 0

    @classmethod
    async def open(cls, root: Path, store_url: str | None = None) -> Lab:
        service = await LaunchService.open(home=root / "home", store=store_url)
        return cls(root, service, store_url)

    def env(self, home: Path | None = None) -> dict[str, str]:
        """The environment of a process of this lab (`home`: one of its own, sharing
        the lab's store when that is PostgreSQL)."""
        env = dict(os.environ)
        env["LAUNCH_TUI_HOME"] = str(home or self.home)
        if self.store_url is None:
            env.pop("LAUNCH_TUI_STORE", None)
        else:
            env["LAUNCH_TUI_STORE"] = self.store_url
        return env

    def write_lock_holder(self) -> int | None:
        """The PID holding the writers' lock of the lab's SQLite store right now (None:
        no one, or a PostgreSQL store, which has no such lock)."""
        path = writer_lock_path(self.service._store.url)
        if path is None or not os.path.exists(path):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return lock_holder(fd)
        finally:
            os.close(fd)

    # -------------------------------------------------------------- world

    async def queue(self, name: str = "local", config: dict[str, Any] | None = None) -> str:
        await self.service.create_queue(name, "local-process", config or {})
        return name

    async def job(
        self,
        files: dict[str, str],
        entrypoint: str,
        *,
        name: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> str:
        """A code job made from `files`; returns its name."""
        self._jobs += 1
        name = name or f"job{self._jobs}"
        src = self.root / "src" / name
        for rel, text in files.items():
            path = src / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        if not files:
            src.mkdir(parents=True, exist_ok=True)
        await self.service.create_code_job(src, entrypoint, name=name, config_defaults=config)
        return name

    # -------------------------------------------------------------- agents

    async def agent(self, queues: Sequence[str], **kw: Any) -> LaunchAgent:
        """A started in-process agent, stopped (its runs cancelled) when the test ends."""
        kw.setdefault("poll_interval_s", 1.0)
        kw.setdefault("cancel_grace_s", 2.0)
        agent = LaunchAgent(self.service, list(queues), **kw)
        self.agents.append(agent)
        await agent.start()
        return agent

    def spawn_agent(self, queues: Sequence[str], name: str, *args: str,
                    home: Path | None = None, prefix: Sequence[str] = ()) -> AgentProcess:
        """A `launch-tui agent` process; `home`: a home of its own (another machine's,
        sharing the lab's PostgreSQL store); `prefix`: a command to run it under."""
        return AgentProcess(self, name, queues, args, home=home, prefix=prefix)

    async def cli(self, *args: str, within: float = 30.0, home: Path | None = None
                  ) -> CliResult:
        """Run `launch-tui ARGS` to completion without blocking this event loop."""
        proc = await asyncio.create_subprocess_exec(
            *cli_argv(*args), cwd=self.root, env=self.env(home), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), within)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(
                f"launch-tui {' '.join(args)} did not finish in {within:g}s"
            ) from None
        assert proc.returncode is not None
        return CliResult(proc.returncode, out.decode(), err.decode())

    async def gated_run(self, agent: str, main_py: str, first_line: str
                        ) -> tuple[AgentProcess, Run, Path]:
        """A spawned agent running `main_py` (which reads the path of a gate file from
        $GATE) on the queue "local", once the run has printed `first_line`. Returns
        the agent, the run and the gate (not yet created)."""
        gate = self.root / "gate"
        queue = await self.queue(config={"env": {"GATE": str(gate)}})
        job = await self.job({"main.py": main_py}, "python main.py")
        process = self.spawn_agent([queue], agent)
        item = await self.service.enqueue(job, queue)
        run = await self.run_of(item.id, within=60)
        await self.wait_output(run.id, first_line, within=60)
        return process, run, gate

    # -------------------------------------------------------------- observing

    async def run_of(self, item_id: int, within: float = 20.0) -> Run:
        """The run made from an item, once the item is claimed."""

        async def claimed() -> str | None:
            item = await self.service.get_item(item_id)
            assert item.state not in (ItemState.FAILED, ItemState.CANCELLED), item
            return item.run_id

        run_id = await wait_for(claimed, f"item #{item_id} to be claimed", within)
        return await self.service.get_run(run_id)

    async def wait_run(
        self,
        run_id: str,
        states: Iterable[RunState] = TERMINAL_RUN_STATES,
        within: float = 30.0,
    ) -> Run:
        wanted = set(states)
        seen: list[Run] = []

        async def reached() -> Run | None:
            run = await self.service.get_run(run_id)
            seen[:] = [run]
            return run if run.state in wanted else None

        return await wait_for(
            reached, f"run {run_id} to be {'/'.join(sorted(wanted))} "
            f"(last seen {seen[0].state if seen else '?'})", within,
        )

    async def output(self, run_id: str) -> list[str]:
        """The run's stored stdout and stderr lines, in order."""
        lines = await self.service.run_logs(run_id, limit=100_000, streams=("stdout", "stderr"))
        return [line.text for line in lines]

    async def wait_output(self, run_id: str, text: str, within: float = 20.0) -> list[str]:
        async def has() -> list[str] | None:
            lines = await self.output(run_id)
            return lines if any(text in line for line in lines) else None

        return await wait_for(has, f"run {run_id} to log {text!r}", within)

    def run_dir(self, run_id: str, home: Path | None = None) -> Path:
        return (home or self.home) / "work" / run_id

    def record(self, run_id: str, name: str, home: Path | None = None
               ) -> dict[str, Any] | None:
        try:
            return json.loads((self.run_dir(run_id, home) / name).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    # -------------------------------------------------------------- teardown

    def machine(self, name: str, settings: str = "") -> Path:
        """The home of another machine sharing the lab's store: nothing of the lab's
        home (artifacts, run directories) is in it. Its processes are stopped at the end."""
        home = self.root / f"machine-{name}"
        home.mkdir()
        if settings:
            (home / "settings.toml").write_text(settings)
        self.homes.append(home)
        return home

    def kill_run_processes(self, run_id: str, home: Path | None = None) -> None:
        """SIGKILL a run's supervisor and its job's process group (pids from the run dir)."""
        sup = self.record(run_id, rd.SUPERVISOR, home)
        if sup is not None and rd.is_alive(int(sup["pid"]), sup.get("start_time")):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(sup["pid"]), signal.SIGKILL)
        job = self.record(run_id, rd.JOB, home)
        if job is not None and rd.is_alive(int(job["pid"]), job.get("start_time")):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(job["pgid"]), signal.SIGKILL)

    async def close(self) -> None:
        for agent in self.agents:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(agent.stop(cancel_runs=True), 30)
        for proc in self.processes:
            # The whole session, even when its leader has exited: a prefix such as
            # faketime runs the agent as its child, which outlives a stopped wrapper.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            if proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(proc.wait, 10)
        for home in self.homes:
            work = home / "work"
            if work.is_dir():
                for run_dir in work.iterdir():
                    self.kill_run_processes(run_dir.name, home)
            for pid, _ in running_servers(home):  # the home's local-process fork server
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        await self.service.close()

