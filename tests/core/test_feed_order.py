"""The change feed under concurrent writers: no event is ever skipped.

On PostgreSQL, sequence numbers are handed out before commit, so a reader that
follows "seq > last" used to miss events that committed late (33 to 64 of 4,000
with 4 writer processes). Each writer here is its own OS process with its own
connection; the subscriber must see every one of their events exactly once, in
order. The same test runs on SQLite.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from launch_tui.core.events import AgentLog
from launch_tui.core.service import LaunchService

WRITERS = 4
EACH = 1000

_WRITER = textwrap.dedent("""
    import asyncio, sys
    from launch_tui.core.service import LaunchService

    async def main(name: str, count: int) -> None:
        svc = await LaunchService.open()
        try:
            # Concurrent calls, so this process's writer groups and interleaves them.
            sem = asyncio.Semaphore(8)
            async def one(i: int) -> None:
                async with sem:
                    await svc.agent_log(name, f"{name} {i}")
            await asyncio.gather(*(one(i) for i in range(count)))
        finally:
            await svc.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
""")


async def test_four_writer_processes_lose_no_event(service: LaunchService, home: Path,
                                                   tmp_path: Path) -> None:
    seen: dict[str, list[int]] = {f"w{i}": [] for i in range(WRITERS)}
    seqs: list[int] = []
    total = WRITERS * EACH
    done = asyncio.Event()
    start = await service.last_event_seq()  # every writer's event comes after this

    async def follow() -> None:
        # A short poll would hide the bug behind re-reads; a slow one leaves the
        # wake-ups (inotify on SQLite, NOTIFY on PostgreSQL) to do the work.
        async for ev in service.subscribe(after=start, poll_s=1.0):
            seqs.append(ev.seq)
            if isinstance(ev, AgentLog) and ev.agent in seen:
                seen[ev.agent].append(int(ev.message.split()[1]))
                if sum(map(len, seen.values())) == total:
                    done.set()
                    return

    follower = asyncio.create_task(follow())
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, str(script), name, str(EACH), env=dict(os.environ),
        stderr=subprocess.PIPE) for name in seen]
    outs = await asyncio.gather(*(asyncio.wait_for(p.communicate(), 120) for p in procs))
    assert [p.returncode for p in procs] == [0] * WRITERS, [e[-500:] for _, e in outs]
    try:
        await asyncio.wait_for(done.wait(), 30)
    except TimeoutError:
        missing = {n: EACH - len(set(v)) for n, v in seen.items()}
        raise AssertionError(f"the subscriber never saw some events: {missing}") from None
    finally:
        follower.cancel()
    for name, numbers in seen.items():
        assert sorted(numbers) == list(range(EACH)), f"{name}: missing or repeated events"
    assert seqs == sorted(set(seqs)), "events arrive once each, in sequence order"
