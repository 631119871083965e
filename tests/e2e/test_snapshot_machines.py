"""A code job made by `launch-tui job create code` with one home runs under a headless
`launch-tui agent` process with another home, sharing only the store: the agent
fetches the snapshot from the store into its own artifacts.

On SQLite the second home names the first home's launch.db (`LAUNCH_TUI_STORE`);
on PostgreSQL both name the test's database.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

from launch_tui.core.model import LogStream, RunState
from tests.agent_harness import Lab, cli_argv, script

TRAIN = script(
    """
    import os, pathlib, stat

    tool = pathlib.Path("bin/tool.sh")
    print("config:", pathlib.Path("conf/settings.txt").read_text().strip())
    print("tool executable:", bool(tool.stat().st_mode & stat.S_IXUSR))
    """
)


def _spawn_agent(lab: Lab, home: Path, queue: str, log: Path) -> subprocess.Popen[bytes]:
    """`launch-tui agent` with `home` as its home and the lab's store as its store (on
    SQLite, the lab's file by path: `Lab.env` leaves an embedded store to each home)."""
    env = lab.env(home=home)
    env["LAUNCH_TUI_STORE"] = lab.store_url or str(lab.home / "launch.db")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cli_argv("agent", "-q", queue, "--name", "agent-b", "--poll-interval", "1"),
            cwd=lab.root, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    lab.processes.append(proc)  # killed at the end whatever happens
    return proc


async def test_an_agent_process_with_its_own_home_runs_a_job_made_elsewhere(lab: Lab) -> None:
    queue = await lab.queue()
    src = lab.root / "src"
    (src / "conf").mkdir(parents=True)
    (src / "bin").mkdir()
    (src / "train.py").write_text(TRAIN)
    (src / "conf" / "settings.txt").write_text("from machine A\n")
    (src / "bin" / "tool.sh").write_text("#!/bin/sh\n")
    os.chmod(src / "bin" / "tool.sh", 0o755)
    made = await lab.cli("job", "create", "code", str(src), "-e", "python train.py",
                         "--name", "tj")
    assert made.returncode == 0, made.stderr
    digest = (await lab.service.job_version("tj")).source["snapshot"]
    item = await lab.service.enqueue("tj", queue)

    home_b = lab.machine("b")  # its processes are stopped with the lab's
    log = lab.root / "agent-b.log"
    proc = _spawn_agent(lab, home_b, queue, log)
    run = await lab.wait_run((await lab.run_of(item.id, within=30)).id, within=60)
    output = await lab.output(run.id)
    assert run.state == RunState.FINISHED, (run.error_message, output, log.read_text())
    assert run.agent == "agent-b"
    assert output == ["config: from machine A", "tool executable: True"]
    build = await lab.service.run_logs(run.id, streams=(LogStream.BUILD,))
    assert f"source: fetched code snapshot {digest[:12]} from the store" in [
        line.text for line in build]
    cached = home_b / "artifacts" / "code" / digest
    assert (cached / "conf" / "settings.txt").read_text() == "from machine A\n"
    assert os.listdir(home_b / "artifacts" / "code") == [digest]
    os.kill(proc.pid, signal.SIGTERM)  # a clean stop
    assert await asyncio.to_thread(proc.wait, 30) == 0, log.read_text()
