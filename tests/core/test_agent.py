"""The agent in this process, driving real local-process runs against a real SQLite store.

What a user would see is asserted: run states, exit codes, error stages and
messages, the run's stored logs and metrics, and the agent's own log lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from launch_tui.core.model import ErrorStage, ItemState, LogStream, RunSpec, RunState
from tests.agent_harness import ACTIVE_STATES, Lab, script, wait_for

# ---------------------------------------------------------------- config reaches the job


WANDB_TRAIN = script(
    """
    import wandb

    run = wandb.init()
    print(f"lr={run.config['lr']!r} epochs={run.config['epochs']!r}")
    run.finish()
    """
)


async def test_wandb_script_sees_queued_config_override(lab: Lab) -> None:
    queue = await lab.queue()
    job = await lab.job({"train.py": WANDB_TRAIN}, "python train.py",
                        config={"lr": 0.1, "epochs": 3})
    await lab.agent([queue])

    launched = await lab.cli("launch", "-j", job, "-q", queue, "--set", "lr=0.5", "--json")
    assert launched.returncode == 0, launched.stderr
    item_id = json.loads(launched.stdout)["id"]
    run = await lab.wait_run((await lab.run_of(item_id)).id, within=45)

    output = await lab.output(run.id)
    assert run.state == RunState.FINISHED, (run.error_message, output)
    # The override replaced the default; the other default came through untouched.
    assert "lr=0.5 epochs=3" in output
    assert run.spec["env"]["WANDB_MODE"] == "offline"
    # The build's lines are stored ahead of what the job printed.
    streams = [x.stream for x in await lab.service.run_logs(run.id, limit=1000)
               if x.stream in (LogStream.BUILD, LogStream.STDOUT)]
    assert streams[0] == LogStream.BUILD and LogStream.STDOUT in streams
    assert streams == sorted(streams, key=lambda s: s != LogStream.BUILD)


async def test_in_job_helper_metrics_become_run_metrics_not_log_lines(lab: Lab) -> None:
    queue = await lab.queue()
    job = await lab.job(
        {
            "train.py": script(
                """
                import launch_tui_sdk as lt

                c = lt.init({"lr": 0.01, "steps": 2})
                print("config", c["lr"], c["steps"])
                for i in range(c["steps"]):
                    lt.log({"loss": 1.0 / (i + 1), "acc": 0.5 + i / 10})
                print("done")
                """
            )
        },
        "python train.py",
        config={"lr": 0.01, "steps": 2},
    )
    await lab.agent([queue])
    item = await lab.service.enqueue(job, queue, config={"lr": 0.5, "steps": 3})
    run = await lab.wait_run((await lab.run_of(item.id)).id)

    output = await lab.output(run.id)
    assert run.state == RunState.FINISHED, (run.error_message, output)
    assert output == ["config 0.5 3", "done"]
    assert not any("@@launch-tui" in line for line in output)
    metrics = await lab.service.run_metrics(run.id)
    assert [(m.step, m.values) for m in metrics] == [
        (0, {"loss": 1.0, "acc": 0.5}),
        (1, {"loss": 0.5, "acc": 0.6}),
        (2, {"loss": 1.0 / 3, "acc": 0.7}),
    ]


# ---------------------------------------------------------------- capacity and fairness


SLEEPER = script(
    """
    import sys, time

    print("start", time.time(), flush=True)
    time.sleep(float(sys.argv[1]))
    print("end", time.time(), flush=True)
    """
)


async def test_max_jobs_is_never_exceeded(lab: Lab) -> None:
    queue = await lab.queue()
    job = await lab.job({"sleep.py": SLEEPER}, "python sleep.py 1.0")
    items = [await lab.service.enqueue(job, queue) for _ in range(5)]
    await lab.agent([queue], max_jobs=2)

    most = 0

    async def all_ended() -> bool:
        nonlocal most
        runs = await lab.service.list_runs(queue)
        active = sum(r.state in ACTIVE_STATES for r in runs)
        assert active <= 2, [(r.id, r.state) for r in runs]
        most = max(most, active)
        return len(runs) == 5 and all(r.state.terminal for r in runs)

    await wait_for(all_ended, "all five runs to end", within=40, interval=0.02)
    assert most == 2  # it did use both slots

    # The jobs' own clocks agree: never three processes alive at once.
    spans = []
    for item in items:
        run = await lab.run_of(item.id)
        assert run.state == RunState.FINISHED, run.error_message
        start, end = (float(line.split()[1]) for line in await lab.output(run.id))
        spans.append((start, end))
    for start, _ in spans:
        overlapping = sum(s <= start < e for s, e in spans)
        assert overlapping <= 2, spans


async def test_two_queues_are_served_round_robin(lab: Lab) -> None:
    qa = await lab.queue("qa")
    qb = await lab.queue("qb")
    job = await lab.job({"sleep.py": SLEEPER}, "python sleep.py 0")
    for _ in range(3):
        await lab.service.enqueue(job, qa)
    for _ in range(3):
        await lab.service.enqueue(job, qb)
    await lab.agent([qa, qb], max_jobs=1)

    async def all_ended() -> list | None:
        runs = await lab.service.list_runs()
        return runs if len(runs) == 6 and all(r.state.terminal for r in runs) else None

    runs = await wait_for(all_ended, "six runs to end", within=40)
    order = [r.queue for r in sorted(runs, key=lambda r: r.timestamps["queued"])]
    assert order == ["qa", "qb", "qa", "qb", "qa", "qb"]
    assert all(r.state == RunState.FINISHED for r in runs)


# ---------------------------------------------------------------- cancel


WAITER = script(
    """
    import os, signal, sys, time

    if "--ignore-term" in sys.argv:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("pid", os.getpid(), flush=True)
    time.sleep(120)
    print("not cancelled")
    """
)


def process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


@pytest.mark.parametrize("how", ["service", "cli", "cli-ignores-sigterm"])
async def test_cancel_of_a_running_job_stops_it_and_its_process(lab: Lab, how: str) -> None:
    queue = await lab.queue()
    entry = "python wait.py" + (" --ignore-term" if how == "cli-ignores-sigterm" else "")
    job = await lab.job({"wait.py": WAITER}, entry)
    await lab.agent([queue], cancel_grace_s=1.0)
    item = await lab.service.enqueue(job, queue)
    run = await lab.run_of(item.id)
    await lab.wait_run(run.id, {RunState.RUNNING})
    pid = int((await lab.wait_output(run.id, "pid"))[0].split()[1])
    assert not process_gone(pid)

    if how == "service":
        await lab.service.cancel(run.id)
    else:
        result = await lab.cli("cancel", run.id)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"run {run.id} stopping"

    run = await lab.wait_run(run.id, within=20)
    assert run.state == RunState.STOPPED
    assert process_gone(pid)
    assert "not cancelled" not in await lab.output(run.id)
    assert (await lab.service.get_item(item.id)).state == ItemState.CLAIMED


class CancelsOnClaim:
    """The service, with each run cancelled by a user the moment its claim commits:
    before the agent has moved it to `building`, which it does as the build begins."""

    def __init__(self, service: Any) -> None:
        self._service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(self._service, name)

    async def claim_run(self, agent: str, queues: Any, **kw: Any) -> Any:
        claimed = await self._service.claim_run(agent, queues, **kw)
        if claimed.run is not None:
            await self._service.cancel(claimed.run.id)
        return claimed


async def test_a_run_cancelled_as_it_is_claimed_never_starts(lab: Lab) -> None:
    from launch_tui.core.agent import LaunchAgent

    queue = await lab.queue()
    job = await lab.job({"main.py": "print('started')\n"}, "python main.py")
    agent = LaunchAgent(CancelsOnClaim(lab.service), [queue],  # type: ignore[arg-type]
                        poll_interval_s=0.2)
    lab.agents.append(agent)
    item = await lab.service.enqueue(job, queue)
    await agent.start()
    run = await lab.wait_run((await lab.run_of(item.id)).id)
    assert run.state == RunState.STOPPED
    assert run.reason == "cancelled before it started"
    assert "started" not in await lab.output(run.id)
    assert not (lab.run_dir(run.id) / "launch.json").exists()  # never submitted
    logs = [e.message for e in await lab.service.agent_logs(agent.name)]
    assert not any("submitted" in line for line in logs), logs


# ---------------------------------------------------------------- failures


FAILING = script(
    """
    import sys

    for i in range(1, 13):
        print(f"step {i}")
    print("boom: loss is nan", file=sys.stderr)
    sys.exit(3)
    """
)
OK = script("print('ok')\n")


async def test_failure_kinds_are_reported_and_the_agent_carries_on(lab: Lab) -> None:
    queue = await lab.queue()
    failing = await lab.job({"train.py": FAILING}, "python train.py", name="failing")
    missing = await lab.job({"other.py": OK}, "python train.py", name="missing")
    broken = await lab.job(
        {"train.py": OK, "requirements.txt": "./nonexistent-pkg\n"}, "python train.py",
        name="broken",
    )
    good = await lab.job({"ok.py": OK}, "python ok.py", name="good")
    order = [failing, good, missing, good, broken, good]
    items = [await lab.service.enqueue(j, queue) for j in order]
    await lab.agent([queue], max_jobs=1)

    runs = []
    for item in items:
        run = await lab.wait_run((await lab.run_of(item.id, within=60)).id, within=60)
        runs.append(run)

    exit_failed, ok1, no_entry, ok2, build_failed, ok3 = runs
    for ok in (ok1, ok2, ok3):
        assert ok.state == RunState.FINISHED, ok.error_message
        assert await lab.output(ok.id) == ["ok"]
    # The ok runs each came after the failure before them: the agent carried on.
    for bad, ok in ((exit_failed, ok1), (no_entry, ok2), (build_failed, ok3)):
        assert bad.timestamps[str(bad.state)] <= ok.timestamps["queued"]

    assert exit_failed.state == RunState.FAILED
    assert exit_failed.exit_code == 3
    assert exit_failed.error_stage == ErrorStage.RUN
    message = exit_failed.error_message or ""
    assert message.startswith("exit code 3")
    assert "boom: loss is nan" in message and "step 12" in message
    assert "step 1\n" not in message  # only the last lines, not everything

    assert no_entry.state == RunState.FAILED
    assert no_entry.error_stage == ErrorStage.RUN
    assert "python train.py" in (no_entry.error_message or "")
    assert "train.py not found" in (no_entry.error_message or "")

    assert build_failed.state == RunState.FAILED
    assert build_failed.error_stage == ErrorStage.BUILD
    assert "requirements.txt" in (build_failed.error_message or "")
    assert "nonexistent-pkg" in (build_failed.error_message or "")
    assert build_failed.handle is None  # never reached the backend


async def test_a_failed_runs_message_quotes_its_own_output_not_the_build_log(lab: Lab) -> None:
    queue = await lab.queue()
    job = await lab.job({"t.py": "import sys\nprint('only line')\nsys.exit(1)\n"}, "python t.py")
    await lab.agent([queue])
    item = await lab.service.enqueue(job, queue)
    run = await lab.wait_run((await lab.run_of(item.id)).id)
    assert run.state == RunState.FAILED
    assert run.error_message == "exit code 1; last output:\nonly line"


async def test_agent_log_says_what_it_claimed_submitted_and_why_it_failed(lab: Lab) -> None:
    queue = await lab.queue()
    failing = await lab.job({"train.py": FAILING}, "python train.py", name="failing")
    missing = await lab.job({"other.py": OK}, "python train.py", name="missing")
    agent = await lab.agent([queue], max_jobs=1, name="logger")
    first = await lab.service.enqueue(failing, queue)
    second = await lab.service.enqueue(missing, queue)
    run1 = await lab.wait_run((await lab.run_of(first.id)).id)
    run2 = await lab.wait_run((await lab.run_of(second.id)).id)

    async def messages() -> list[str]:
        return [e.message for e in await lab.service.agent_logs(agent.name)]

    async def both_failures_logged() -> list[str] | None:
        found = await messages()
        ok = any(m.startswith(f"run {run1.id} failed") for m in found) and any(
            m.startswith(f"run {run2.id} failed") for m in found)
        return found if ok else None

    logged = await wait_for(both_failures_logged, "the failures in the agent log")
    text = "\n".join(logged)
    assert logged[0].startswith("started on queue local")
    assert f"claimed item #{first.id} (failing:v0, medium) from queue local" in text
    assert f"claimed item #{second.id} (missing:v0, medium) from queue local" in text
    assert f"submitted run {run1.id} to local-process" in text
    assert f"run {run1.id} failed: exit code 3" in text
    assert f"run {run2.id} could not start: entrypoint: 'python train.py' cannot start" in text
    assert f"submitted run {run2.id}" not in text
    # Lines about a run carry its id, so a UI can show them beside the run.
    about_run1 = [e for e in await lab.service.agent_logs(agent.name) if e.run_id == run1.id]
    assert about_run1 and all(run1.id in e.message for e in about_run1)


async def test_a_held_queue_waits_and_runs_once_resumed(lab: Lab) -> None:
    """A running agent takes nothing from a held queue; resuming it wakes the agent
    through the change feed (its poll interval here is far longer than the wait)."""
    queue = await lab.queue()
    job = await lab.job({"sleep.py": SLEEPER}, "python sleep.py 0")
    await lab.service.hold_queue(queue, reason="maintenance")
    item = await lab.service.enqueue(job, queue)
    agent = await lab.agent([queue], max_jobs=1, poll_interval_s=60)
    await wait_for(lambda: _polling(lab, agent.name), "the agent to poll", within=20)
    assert (await lab.service.get_item(item.id)).state == ItemState.PENDING
    assert (await lab.service.get_item(item.id)).why.startswith(
        f"queue {queue} is held: maintenance")
    await lab.service.resume_queue(queue)
    run = await wait_for(lambda: _finished(lab, item.id), "the run to finish", within=20)
    assert run.state == RunState.FINISHED


async def _polling(lab: Lab, name: str) -> bool:
    return any(a.name == name and a.status == "polling" for a in await lab.service.list_agents())


async def _finished(lab: Lab, item_id: int):  # type: ignore[no-untyped-def]
    it = await lab.service.get_item(item_id)
    if it.run_id is None:
        return None
    run = await lab.service.get_run(it.run_id)
    return run if run.state.terminal else None


async def test_the_builds_log_is_stored_before_the_job_is_submitted(
    lab: Lab, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An agent that dies while submitting leaves the build's log to whoever takes the
    run over: it is stored with the move to `starting`, before submit, and only once."""
    from launch_tui.backends.local_process import LocalProcessBackend

    at_submit: list[list[str]] = []
    real_submit = LocalProcessBackend.submit

    async def submit(self: LocalProcessBackend, spec: RunSpec, *args: Any, **kw: Any) -> Any:
        logs = await lab.service.run_logs(spec.run_id)
        at_submit.append([line.text for line in logs if line.stream == LogStream.BUILD])
        return await real_submit(self, spec, *args, **kw)

    monkeypatch.setattr(LocalProcessBackend, "submit", submit)
    queue = await lab.queue()
    job = await lab.job({"train.py": OK}, "python train.py")
    await lab.agent([queue], max_jobs=1)
    item = await lab.service.enqueue(job, queue)
    run = await lab.wait_run((await lab.run_of(item.id)).id)
    assert run.state == RunState.FINISHED
    assert at_submit and at_submit[0], "no build line was stored when the job was submitted"
    stored = [line.text for line in await lab.service.run_logs(run.id)
              if line.stream == LogStream.BUILD]
    assert stored == at_submit[0]
