"""A run's output reaches the store whole, or with a marker saying what was not stored.

Real agent, real local-process runs, real SQLite store.
"""

from __future__ import annotations

from launch_tui.core.gaps import gap_count
from launch_tui.core.model import RunState
from tests.agent_harness import Lab, script

FLOOD = script(
    """
    import sys
    out = sys.stdout
    for i in range(300_000):
        out.write(f"line {i}\\n")
    out.write("LAST\\n")
    """
)


async def test_a_flood_is_stored_or_marked_never_cut(lab: Lab) -> None:
    queue = await lab.queue()
    job = await lab.job({"flood.py": FLOOD}, "python flood.py")
    quiet = await lab.job({"q.py": "print('quiet')\n"}, "python q.py")
    await lab.agent([queue], max_jobs=2)
    flood_item = await lab.service.enqueue(job, queue)
    quiet_item = await lab.service.enqueue(quiet, queue)

    # A chatty run never holds up another run's dispatch or output.
    quiet_run = await lab.wait_run((await lab.run_of(quiet_item.id)).id, within=60)
    assert quiet_run.state == RunState.FINISHED
    assert await lab.output(quiet_run.id) == ["quiet"]

    run = await lab.wait_run((await lab.run_of(flood_item.id)).id, within=240)
    assert run.state == RunState.FINISHED, run.error_message
    lines = await lab.service.run_logs(run.id, limit=1_000_000)
    stored = [x.text for x in lines if x.stream == "stdout"]
    markers = [x.text for x in lines if x.stream == "agent" and gap_count(x.text)]
    not_stored = sum(gap_count(m) for m in markers)
    # Every line the job printed is either stored, in order, or counted in a marker.
    assert len(stored) + not_stored == 300_001
    assert stored[-1] == "LAST"
    numbers = [int(s.split()[1]) for s in stored[:-1]]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    for marker in markers:
        assert f"full log at {lab.run_dir(run.id) / 'output.jsonl'}" in marker
    # A re-attaching agent would skip exactly what the job produced.
    assert await lab.service.output_line_count(run.id) == 300_001
    # And every line can be read back whole from where the backend keeps it.
    full = await lab.cli("logs", run.id, "--full", within=120)
    assert full.returncode == 0, full.stderr
    printed = full.stdout.splitlines()
    assert len(printed) == 300_001 and printed[0] == "line 0" and printed[-1] == "LAST"


async def test_full_output_of_a_quiet_run_and_of_an_unknown_run(lab: Lab) -> None:
    queue = await lab.queue()
    quiet = await lab.job({"q.py": "print('quiet')\n"}, "python q.py", name="quiet")
    await lab.agent([queue])
    run = await lab.wait_run((await lab.run_of(
        (await lab.service.enqueue(quiet, queue)).id)).id)
    r = await lab.cli("logs", run.id, "--full")
    assert r.returncode == 0 and r.stdout.splitlines() == ["quiet"], r.stderr
    r = await lab.cli("logs", "nosuchrun", "--full")
    assert r.returncode == 1 and "run: 'nosuchrun' does not exist." in r.stderr
