"""Output of a run with several sources (the pods of a Kubernetes Job, read at once):
stored with its source, and a re-attaching agent skips what each source already
stored, whatever interleaving the backend's replay has this time.

The subject is the agent and the store, so the target is a test double: an in-process
backend implementing the Backend protocol that replays a scripted interleaving of
two sources ("pod-a", "pod-b") per agent life, registered as a target resource for
the test. Everything else is real: agents, collector, SQLite or PostgreSQL store, CLI.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from launch_tui.core import registry
from launch_tui.core.agent import output as agent_output
from launch_tui.core.backend import (
    NOTHING_BUILT,
    BackendBase,
    BackendPlugin,
    BuildLog,
    BuildResult,
    Lagging,
    LogChunk,
    RunHandle,
    RunStatus,
)
from launch_tui.core.gaps import gap_count
from launch_tui.core.model import LogStream, RunSpec, RunState
from launch_tui.core.sdk import MARKER
from tests.agent_harness import Lab, wait_for

RESOURCE = "two-pods"
A, B = "pod-a", "pod-b"

Script = Sequence[tuple[str, str]]  # (source, text) in the order this life delivers them


@dataclass
class Pods:
    """What the scripted target knows: per agent life (each call of `logs`), the
    interleaving it replays, and whether the run then ends or keeps going."""

    lives: list[tuple[Script, bool]]
    submitted: set[str] = field(default_factory=set)
    replays: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    delivered: asyncio.Event = field(default_factory=asyncio.Event)  # a life's whole script


class TwoPodBackend(BackendBase):
    """A test double of a target whose runs have two output sources; see the module."""

    name = RESOURCE
    resource_schema: dict[str, Any] = {"type": "object"}

    def __init__(self, pods: Pods) -> None:
        self.pods = pods

    async def submit(self, spec: RunSpec, build: BuildResult = NOTHING_BUILT) -> RunHandle:
        self.pods.submitted.add(spec.run_id)
        return RunHandle(RESOURCE, spec.run_id)

    async def find(self, run_id: str, spec: RunSpec | None = None) -> RunHandle | None:
        return RunHandle(RESOURCE, run_id) if run_id in self.pods.submitted else None

    async def status(self, handle: RunHandle) -> RunStatus:
        return RunStatus(RunState.FINISHED if self.pods.ended.is_set() else RunState.RUNNING)

    async def watch(self, handle: RunHandle) -> AsyncIterator[RunStatus]:
        yield RunStatus(RunState.RUNNING)
        await self.pods.ended.wait()
        yield RunStatus(RunState.FINISHED, exit_code=0)

    async def logs(self, handle: RunHandle, follow: bool = True, *,
                   lagging: Lagging | None = None, stored: int = 0
                   ) -> AsyncIterator[LogChunk]:
        script, ends = self.pods.lives[self.pods.replays]
        self.pods.replays += 1
        for n, (source, text) in enumerate(script):
            # No await between lines: the whole script is read before the collector's
            # writer runs, so a long one floods its buffer.
            yield LogChunk(LogStream.STDOUT, text, float(n), source=source)
        self.pods.delivered.set()
        if ends:
            self.pods.ended.set()
            return
        await asyncio.Event().wait()  # the run goes on; this life's agent stops meanwhile

    async def cancel(self, handle: RunHandle, grace_s: float) -> None:
        self.pods.ended.set()


class NothingToBuild:
    name = RESOURCE

    async def build(self, spec: RunSpec, log: BuildLog) -> BuildResult:
        return NOTHING_BUILT


@pytest.fixture
def pods(monkeypatch: pytest.MonkeyPatch) -> Pods:
    """The scripted target, registered as the resource `two-pods` (tests set `lives`)."""
    world = Pods(lives=[])
    plugin = BackendPlugin(RESOURCE, TwoPodBackend.resource_schema,
                           backend=lambda ctx: TwoPodBackend(world),
                           builder=lambda ctx: NothingToBuild())
    real = registry.plugins()
    monkeypatch.setattr(registry, "plugins", lambda: {**real, RESOURCE: plugin})
    return world


def lines(source: str | None, *names: str) -> list[tuple[str, str]]:
    return [(source, name) for name in names]


def metric(step: int, loss: float) -> str:
    return MARKER + json.dumps({"type": "metrics", "step": step, "ts": float(step),
                                "values": {"loss": loss}})


async def start_run(lab: Lab, pods: Pods) -> str:
    """Enqueue a run on the scripted target; return its id once the first agent life
    has stored all its first script delivered, then stop that agent mid-run."""
    await lab.service.create_queue("pods", RESOURCE)
    await lab.service.create_image_job("example/train:1", name="train")
    item = await lab.service.enqueue("train", "pods")
    agent = await lab.agent(["pods"], name="pod-agent")
    run = await lab.run_of(item.id)
    first, _ = pods.lives[0]
    own = sum(1 for _, text in first)

    async def stored() -> bool:
        return await lab.service.output_line_count(run.id) >= min(own, 4000)

    await wait_for(stored, "the first life's output to be stored")
    await agent.stop()  # not its runs: they keep going on the target
    assert (await lab.service.get_run(run.id)).state == RunState.RUNNING
    return run.id


async def reattach_and_finish(lab: Lab, run_id: str) -> None:
    await lab.agent(["pods"], name="pod-agent")
    run = await lab.wait_run(run_id)
    assert run.state == RunState.FINISHED, run.error_message


async def by_source(lab: Lab, run_id: str) -> dict[str | None, list[str]]:
    out: dict[str | None, list[str]] = {}
    for line in await lab.service.run_logs(run_id, limit=1_000_000,
                                           streams=("stdout", "stderr")):
        out.setdefault(line.source, []).append(line.text)
    return out


async def test_a_replay_in_another_interleaving_stores_each_sources_lines_once(
        lab: Lab, pods: Pods) -> None:
    pods.lives = [
        (lines(A, "A1") + lines(B, "B1") + lines(A, "A2"), False),
        (lines(B, "B1", "B2") + lines(A, "A1", "A2", "A3"), True),
    ]
    run_id = await start_run(lab, pods)
    assert await lab.service.output_line_counts(run_id) == {A: 2, B: 1}

    await reattach_and_finish(lab, run_id)
    assert pods.replays == 2
    assert await by_source(lab, run_id) == {A: ["A1", "A2", "A3"], B: ["B1", "B2"]}
    assert await lab.service.output_line_counts(run_id) == {A: 3, B: 2}
    assert await lab.service.output_line_count(run_id) == 5

    # People see where each line came from.
    shown = await lab.cli("logs", run_id)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == ["[pod-a] A1", "[pod-b] B1", "[pod-a] A2",
                                         "[pod-b] B2", "[pod-a] A3"]
    as_json = await lab.cli("logs", run_id, "--json")
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert [(r["source"], r["stream"], r["text"]) for r in rows] == [
        (A, "stdout", "A1"), (B, "stdout", "B1"), (A, "stdout", "A2"),
        (B, "stdout", "B2"), (A, "stdout", "A3")]
    followed = await lab.cli("logs", run_id, "--follow")
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout == shown.stdout
    assert f"-- run {run_id} finished" in followed.stderr


async def test_metric_records_are_skipped_by_their_source_too(lab: Lab, pods: Pods) -> None:
    pods.lives = [
        ([(A, "A1"), (B, "B1"), (A, metric(1, 0.9)), (A, "A2")], False),
        ([(B, "B1"), (B, metric(1, 0.5)), (B, "B2"), (A, "A1"), (A, metric(1, 0.9)),
          (A, "A2"), (A, metric(2, 0.8)), (A, "A3")], True),
    ]
    run_id = await start_run(lab, pods)
    assert await lab.service.output_line_counts(run_id) == {A: 3, B: 1}

    await reattach_and_finish(lab, run_id)
    assert await by_source(lab, run_id) == {A: ["A1", "A2", "A3"], B: ["B1", "B2"]}
    records = await lab.service.run_metrics(run_id)
    assert sorted((m.source, m.step, m.values["loss"]) for m in records) == [
        (A, 1, 0.9), (A, 2, 0.8), (B, 1, 0.5)]
    assert await lab.service.output_line_counts(run_id) == {A: 5, B: 3}


async def test_a_flood_gap_is_marked_per_source_and_the_replay_skips_it_exactly(
        lab: Lab, pods: Pods) -> None:
    # Far more than the collector buffers for a run, delivered at once: most of it is
    # counted in gap markers, not stored, from both sources.
    flood = [(B if n % 10 == 9 else A, f"{'B' if n % 10 == 9 else 'A'}{n}")
             for n in range(3 * agent_output.MAX_BUFFERED_PER_RUN)]
    a_lines = [(s, t) for s, t in flood if s == A]
    b_lines = [(s, t) for s, t in flood if s == B]
    pods.lives = [
        (flood, False),
        # The replay delivers all of pod-b and its new line first, then pod-a's: a total
        # count to skip would swallow B-last and store a line of pod-a twice.
        ([*b_lines, (B, "B-last"), *a_lines, (A, "A-last")], True),
    ]
    run_id = await start_run(lab, pods)
    first = await lab.service.run_logs(run_id, limit=1_000_000)
    markers = [(x.source, gap_count(x.text)) for x in first
               if x.stream == "agent" and gap_count(x.text)]
    assert {source for source, _ in markers} == {A, B}
    assert await lab.service.output_line_counts(run_id) == {A: len(a_lines), B: len(b_lines)}

    await reattach_and_finish(lab, run_id)
    stored = await by_source(lab, run_id)
    for source, script in ((A, a_lines), (B, b_lines)):
        expect = [t for _, t in script]
        kept = stored[source][:-1]
        # In order, none twice, nothing invented; the last line is the new one.
        assert kept == [t for t in expect if t in set(kept)]
        assert len(set(stored[source])) == len(stored[source])
        lost = sum(n for s, n in markers if s == source)
        assert len(kept) + lost == len(expect)
    assert stored[A][-1] == "A-last" and stored[B][-1] == "B-last"
    assert await lab.service.output_line_counts(run_id) == {A: len(a_lines) + 1,
                                                            B: len(b_lines) + 1}


async def test_an_agent_stopping_during_a_reattached_run_stores_what_it_had_read(
        lab: Lab, pods: Pods, monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-attached one-source run (lines already stored): lines read in the new life
    but not yet written when the agent stops are stored by the bounded drain on the
    way out, not dropped with the run's buffer."""
    old = lines(None, *(f"old {n}" for n in range(5)))
    new = lines(None, *(f"new {n}" for n in range(3)))
    pods.lives = [(old, False), ([*old, *new], False), ([*old, *new, (None, "last")], True)]
    run_id = await start_run(lab, pods)
    # The collector holds the new lines for a second before writing them, so the
    # stop below comes while they are read and not yet stored.
    monkeypatch.setattr(agent_output, "FLUSH_S", 1.0)
    pods.delivered.clear()
    agent = await lab.agent(["pods"], name="pod-agent")
    await asyncio.wait_for(pods.delivered.wait(), 30)
    assert await lab.service.output_line_count(run_id) == len(old)
    await agent.stop()
    assert (await by_source(lab, run_id))[None] == [t for _, t in old + new]

    await reattach_and_finish(lab, run_id)
    assert (await by_source(lab, run_id))[None] == [t for _, t in old + new] + ["last"]
