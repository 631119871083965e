"""A process stopped while it writes to the embedded store.

SQLite's writers of all processes take turns on one file lock (core/store/
writelock.py): a process stopped inside a write transaction holds it, and every
other writer waits until it continues. Ctrl-Z on an agent therefore stops it
between transactions, never inside one; and a write that waits long for a holder
says which process holds it and that it is stopped. Real processes, a real
SQLite store, the app in tmux; the holder of the lock is read from /proc/locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from launch_tui.core.model import RunState
from launch_tui.core.store.engine import writer_lock_path
from launch_tui.core.store.writelock import describe_process
from tests.agent_harness import ROOT, Lab, cli_argv, script, until_stopped, wait_for
from tests.tui.test_tmux import Tmux, app_pid

pytestmark = pytest.mark.sqlite_only  # the file lock is SQLite's (PostgreSQL: test_pg_connect)

FLOOD = script(
    """
    import os
    from pathlib import Path
    gate = Path(os.environ["GATE"])
    pad = "x" * 4000
    i = 0
    while i % 100 or not gate.exists():
        print(f"line {i} {pad}", flush=True)
        i += 1
    print("done", flush=True)
    """
)
STOPS = 30
APP_STOPS = 10


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    (tmp_path / "home").mkdir()
    lab = await Lab.open(tmp_path)
    try:
        yield lab
    finally:
        await lab.close()


async def _more_stored(lab: Lab, run_id: str) -> None:
    """Until the store accounts for more of the run's output than it does now."""
    before = await lab.service.output_line_count(run_id)

    async def more() -> bool:
        return await lab.service.output_line_count(run_id) > before

    await wait_for(more, "more of the run's output to be stored", within=30)


def _ended(pid: int | None) -> bool:
    """Whether a process has exited (gone, or a zombie nobody has reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


async def _last_line(lab: Lab, run_id: str) -> str | None:
    """The run's last stored line of output, however many there are."""
    after, last = 0, None
    while page := await lab.service.run_logs(run_id, after=after, limit=50_000,
                                             streams=("stdout", "stderr")):
        after, last = page[-1].id, page[-1].text
    return last


async def test_ctrl_z_stops_an_agent_between_its_writes(lab: Lab) -> None:
    agent, run, gate = await lab.gated_run("z", FLOOD, "line 1 ")

    # While the run floods the agent with output, its writer commits much of the
    # time: stopped at once (SIGTSTP's default action), the agent held the lock at
    # its first stop in each of two tries when this test was written.
    inside = 0
    for stop in range(STOPS):
        os.kill(agent.pid, signal.SIGTSTP)
        await until_stopped(agent.pid)
        if lab.write_lock_holder() == agent.pid:
            inside += 1
        if stop == 0:
            # Other processes write on while it is stopped (here: this one).
            try:
                await asyncio.wait_for(lab.service.create_queue("other", "local-process"), 10)
            except TimeoutError:
                raise AssertionError("no other process could write while the agent was "
                                     "stopped") from None
        os.kill(agent.pid, signal.SIGCONT)
        await until_stopped(agent.pid, False)
        # The next stop comes after the agent has stored more of the run's output,
        # so each lands while its writer is busy.
        await _more_stored(lab, run.id)
    assert inside == 0, f"stopped inside a write {inside} times of {STOPS}"

    gate.touch()
    done = await lab.wait_run(run.id, within=60)
    assert done.state == RunState.FINISHED, done.error_message
    assert await _last_line(lab, run.id) == "done"
    assert await agent.stop() == 0


async def test_a_write_waiting_for_a_stopped_holder_says_who_it_is(lab: Lab,
                                                                   tmp_path: Path) -> None:
    await lab.queue()
    lock = writer_lock_path(lab.service._store.url)
    assert lock is not None
    # A process that takes the writers' lock as a launch-tui writer does, and is
    # stopped holding it (a Ctrl-Z'd older version, a debugger, SIGSTOP).
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c",
        "import fcntl, os, signal\n"
        f"fd = os.open({lock!r}, os.O_RDWR)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGSTOP)\n",
        stdout=asyncio.subprocess.PIPE)
    writer = None
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 30) == b"held\n"
        await until_stopped(holder.pid)

        writer = await asyncio.create_subprocess_exec(
            *cli_argv("queue", "create", "late", "-r", "local-process"), cwd=ROOT,
            env=lab.env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert writer.stderr is not None
        line = (await asyncio.wait_for(writer.stderr.readline(), 30)).decode()
        assert writer.returncode is None  # still waiting
        name = Path(sys.executable).name[:15]  # the kernel's process name: python3, …
        assert line.rstrip("\n") == (
            f"store: a write has waited 5s for the store's write lock ({lock}): process "
            f"{holder.pid} ({name}) holds it and is stopped; writes resume when it "
            f"continues (fg, or kill -CONT {holder.pid}) or ends.")

        os.kill(holder.pid, signal.SIGCONT)  # it exits, and the lock is free
        _, err = await asyncio.wait_for(writer.communicate(), 30)
        assert writer.returncode == 0, err
        assert [q.name for q in await lab.service.list_queues()] == ["late", "local"]
    finally:
        for proc in (holder, writer):
            if proc is not None and proc.returncode is None:
                proc.kill()
                os.kill(proc.pid, signal.SIGCONT)
                await proc.wait()


async def test_ctrl_z_in_the_app_stops_it_between_its_writes(lab: Lab, tmp_path: Path
                                                             ) -> None:
    """The app with an agent inside it, in a real terminal under an interactive shell,
    while a run floods that agent: Ctrl-Z gives the shell its prompt back with the
    app stopped outside any write (others write on), and fg brings the app back."""
    gate = lab.root / "gate"
    queue = await lab.queue(config={"env": {"GATE": str(gate)}})
    job = await lab.job({"main.py": FLOOD}, "python main.py")
    item = await lab.service.enqueue(job, queue)
    app = (f"cd {ROOT} && env -u LAUNCH_TUI_STORE LAUNCH_TUI_HOME={lab.home} "
           f"TERM=xterm-256color {sys.executable} -c "
           f"'from launch_tui.tui.app import run_app; run_app(agent_queues=[\"{queue}\"])'")
    tmux = Tmux(f"launch-tui-z-{os.getpid()}-{tmp_path.name}")
    # Job control is the shell's: the app is started from an interactive one.
    tmux.run("new-session", "-d", "-s", "app", "-x", "80", "-y", "24",
             "env PS1='$ ' bash --norc --noprofile -i")
    pid = None
    try:
        tmux.run("send-keys", "-t", "app", "-l", app)
        tmux.run("send-keys", "-t", "app", "Enter")
        pid = await asyncio.to_thread(app_pid, tmux, 30)
        await asyncio.to_thread(tmux.wait_for, "1 Jobs (1)", 30)
        run = await lab.run_of(item.id, within=60)
        await lab.wait_output(run.id, "line 1 ", within=60)

        inside = 0
        for stop in range(APP_STOPS):
            tmux.keys("C-z")
            await until_stopped(pid)
            if lab.write_lock_holder() == pid:
                inside += 1
            if stop == 0:
                await asyncio.to_thread(tmux.wait_for, "Stopped")  # the shell's prompt
                try:
                    await asyncio.wait_for(lab.service.create_queue("other", "local-process"),
                                           10)
                except TimeoutError:
                    raise AssertionError("no other process could write while the app was "
                                         "stopped") from None
            tmux.keys("fg", "Enter")
            await until_stopped(pid, False)
            await _more_stored(lab, run.id)
        assert inside == 0, f"stopped inside a write {inside} times of {APP_STOPS}"
        await asyncio.to_thread(tmux.wait_for, "1 Jobs (1)")  # drawn again after fg

        gate.touch()
        done = await lab.wait_run(run.id, within=60)
        assert done.state == RunState.FINISHED, done.error_message
        assert await _last_line(lab, run.id) == "done"
    finally:
        if pid is not None and describe_process(pid)[1]:
            os.kill(pid, signal.SIGCONT)  # stopped: the hang-up below then ends it
        tmux.run("kill-server")
    # The terminal gone, the app ends (its agent with it) rather than linger.
    try:
        await wait_for(lambda: _ended(pid), "the app to exit after its terminal went away",
                       within=30)
    except AssertionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # leave no orphan behind, then fail
        raise
