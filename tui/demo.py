"""A small demo world, made only through the service: jobs, queues, items and runs.

`seed_demo` is what `launch-tui demo` runs: two small code jobs, a local queue
(and a docker queue, to show its form) and a few items for the real agent.
`seed_showcase` adds runs in several states for the screenshots and tests,
made by playing the agent's side of the lease protocol (claim, acknowledge,
set_run_state, append_logs, record_metrics), so no backend is needed.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import string
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from launch_tui.core.model import AgentStatus, ErrorStage, LogStream, Priority, RunState
from launch_tui.core.service import LaunchService

TRAIN_PY = '''\
"""Toy training loop: prints progress and reports loss/accuracy per epoch."""
import math
import sys
import time

try:
    import launch_tui_sdk as lt
except ImportError:  # outside launch-tui
    lt = None

defaults = {"lr": 0.01, "epochs": 5, "optimizer": "adam", "augment": True}
config = lt.init(defaults) if lt else defaults
print(f"training with {config}")
for epoch in range(int(config["epochs"])):
    if float(config["lr"]) >= 0.5:  # the demo's way to fail: try lr=0.5 in the form
        sys.exit(f"ValueError: loss became NaN at epoch {epoch + 1} (lr {config['lr']} is "
                 "too high)")
    loss = 2.0 * math.exp(-float(config["lr"]) * 40 * (epoch + 1))
    print(f"epoch {epoch + 1}/{config['epochs']} loss={loss:.4f}")
    if lt:
        lt.log({"loss": loss, "accuracy": 1.0 - loss / 2.5})
    time.sleep(0.5)
print("done")
'''

EVAL_PY = '''\
"""Toy evaluation: reads a checkpoint name and prints a score."""
import json
import os

config = json.loads(os.environ.get("LAUNCH_TUI_CONFIG", "{}"))
print(f"evaluating {config.get('checkpoint')} on {config.get('split')}")
print("score=0.87")
'''

TRAIN_DEFAULTS = {"lr": 0.01, "epochs": 5, "optimizer": "adam", "augment": True}
TRAIN_SCHEMA = {
    "type": "object",
    "properties": {
        "lr": {"type": "number", "exclusiveMinimum": 0, "maximum": 1,
               "description": "Learning rate"},
        "epochs": {"type": "integer", "minimum": 1, "maximum": 100},
        "optimizer": {"type": "string", "enum": ["adam", "sgd", "adamw"]},
        "augment": {"type": "boolean", "description": "Random crops and flips"},
    },
    "additionalProperties": False,
}
EVAL_DEFAULTS = {"split": "val", "batch_size": 64, "checkpoint": "latest"}
EVAL_SCHEMA = {
    "type": "object",
    "properties": {
        "split": {"type": "string", "enum": ["val", "test"]},
        "batch_size": {"type": "integer", "minimum": 1, "maximum": 1024},
        "checkpoint": {"type": "string", "minLength": 1},
    },
    "additionalProperties": False,
}
LOCAL_QUEUE = {
    "resource_args": {"timeout_s": "{{timeout}}"},
    "template_variables": {
        "timeout": {"type": "integer", "minimum": 10, "maximum": 86400, "default": 600,
                    "description": "Stop the run after this many seconds"},
    },
}
DOCKER_QUEUE = {
    "resource_args": {"gpus": "{{gpus}}", "memory": "8g", "network": "none"},
    "template_variables": {
        "gpus": {"type": "integer", "minimum": 0, "maximum": 8, "default": 1},
    },
    "allow_overrides": ["memory", "cpus"],
}


@dataclass
class Demo:
    project: str
    jobs: list[str] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)
    runs: dict[str, str] = field(default_factory=dict)  # state -> run id
    items: list[int] = field(default_factory=list)
    agent: str | None = None


def write_sources(root: Path) -> tuple[Path, Path]:
    train = root / "train"
    evaluate = root / "evaluate"
    train.mkdir(parents=True, exist_ok=True)
    evaluate.mkdir(parents=True, exist_ok=True)
    (train / "train.py").write_text(TRAIN_PY)
    (evaluate / "eval.py").write_text(EVAL_PY)
    return train, evaluate


async def seed_jobs_and_queues(service: LaunchService, root: Path) -> Demo:
    """Two code jobs and two queues (local-process, and a docker queue for its form).

    Safe to run twice: identical jobs make no new version, existing queues are kept.
    """
    project = service.project_or_default(None)
    demo = Demo(project=project)
    train, evaluate = write_sources(root)
    existing = {q.name for q in await service.list_queues(project=project)}
    await service.create_code_job(train, "python train.py", name="train",
                                  config_defaults=TRAIN_DEFAULTS, input_schema=TRAIN_SCHEMA)
    await service.create_code_job(evaluate, "python eval.py", name="evaluate",
                                  config_defaults=EVAL_DEFAULTS, input_schema=EVAL_SCHEMA)
    demo.jobs = ["evaluate", "train"]
    if "local" not in existing:
        await service.create_queue("local", "local-process", LOCAL_QUEUE)
    if "gpu" not in existing:
        await service.create_queue("gpu", "docker", DOCKER_QUEUE)
    demo.queues = ["gpu", "local"]
    return demo


async def play_run(
    service: LaunchService,
    agent: str,
    queue: str,
    end: RunState | None,
    *,
    lines: list[str],
    metrics: int = 0,
    exit_code: int | None = None,
    error: str | None = None,
    ts: float | None = None,
) -> str:
    """Claim the next item of `queue` as `agent` and take its run to `end` (None: running)."""
    ts = time.time() if ts is None else ts
    item = await service.claim(agent, [queue])
    if item is None:
        raise RuntimeError(f"nothing to claim on {queue}")
    run = await service.acknowledge(item.id, agent)
    await service.agent_log(agent, f"claimed item #{item.id} from {queue}", run_id=run.id)
    await service.set_run_state(run.id, RunState.BUILDING)
    await service.append_logs(run.id, [(ts, LogStream.BUILD, "environment ready (cached)")])
    await service.set_run_state(run.id, RunState.RUNNING, handle={"pid": 4242})
    await service.agent_log(agent, f"submitted run {run.id}", run_id=run.id)
    await service.append_logs(run.id, [(ts + i, LogStream.STDOUT, text)
                                       for i, text in enumerate(lines)])
    if metrics:
        await service.record_metrics(run.id, [
            (step, ts + step, {"loss": 2.0 * math.exp(-0.4 * (step + 1)),
                               "accuracy": 0.5 + 0.45 * (1 - math.exp(-0.5 * step))})
            for step in range(metrics)
        ])
    if end is None:
        return run.id
    if end == RunState.FAILED:
        await service.append_logs(run.id, [(ts + 20, LogStream.STDERR, error or "failed")])
        await service.set_run_state(run.id, end, exit_code=exit_code, error_stage=ErrorStage.RUN,
                                    error_message=error)
        await service.agent_log(agent, f"run {run.id} failed: {error}", level="error",
                                run_id=run.id)
    else:
        await service.set_run_state(run.id, end, exit_code=exit_code)
        await service.agent_log(agent, f"run {run.id} {end} (exit {exit_code})", run_id=run.id)
    return run.id


async def seed_demo(service: LaunchService, root: Path | None = None) -> tuple[str, str, bool]:
    """What `launch-tui demo` seeds: jobs, queues and, the first time only, two items
    for a real agent (every `make run` would otherwise run them again).

    Returns (project, queue to start the agent on, whether items were enqueued).
    Sources go under the home dir.
    """
    root = root or service.settings.home / "demo"
    first_time = not any(job.name in ("train", "evaluate")
                         for job in await service.list_jobs())
    demo = await seed_jobs_and_queues(service, root)
    if first_time:
        await service.enqueue("train", "local", config={"epochs": 3})
        await service.enqueue("evaluate", "local")
    return demo.project, "local", first_time


async def seed_showcase(service: LaunchService, root: Path, *, ts: float | None = None) -> Demo:
    """Jobs, queues, a stand-in agent, runs in several states and a few waiting items.

    `ts` is the time stamped on log lines and metrics (tests pass a fixed one).
    """
    demo = await seed_jobs_and_queues(service, root)
    agent = "demo-agent"
    await service.register_agent(agent, ["local"], max_jobs=4)
    demo.agent = agent
    epochs = [f"epoch {i}/5 loss={2.0 * math.exp(-0.4 * i):.4f}" for i in range(1, 6)]
    await service.enqueue("train", "local")
    demo.runs["finished"] = await play_run(
        service, agent, "local", RunState.FINISHED, lines=["training with defaults", *epochs,
                                                           "done"],
        metrics=12, exit_code=0, ts=ts)
    await service.enqueue("train", "local", config={"lr": 0.5})
    demo.runs["failed"] = await play_run(
        service, agent, "local", RunState.FAILED, lines=["training with lr=0.5",
                                                         "epoch 1/5 loss=nan"],
        exit_code=1, error="ValueError: loss became NaN at epoch 1", ts=ts)
    await service.enqueue("evaluate", "local", config={"split": "test"})
    demo.runs["running"] = await play_run(
        service, agent, "local", None, lines=["evaluating latest on test", "batch 1/20"],
        metrics=6, ts=ts)
    await service.enqueue("train", "local", config={"epochs": 20}, priority=Priority.HIGH)
    item = await service.claim(agent, ["local"])
    assert item is not None
    run = await service.acknowledge(item.id, agent)
    await service.set_run_state(run.id, RunState.BUILDING)
    demo.runs["building"] = run.id
    for priority, config in (
        (Priority.MEDIUM, {"epochs": 3}),
        (Priority.CRITICAL, {"lr": 0.001}),
        (Priority.LOW, {}),
    ):
        queued = await service.enqueue("train", "local", config=config, priority=priority)
        demo.items.append(queued.id)
    queued = await service.enqueue("evaluate", "gpu", template_values={"gpus": 2})
    demo.items.append(queued.id)
    await service.agent_heartbeat(agent, AgentStatus.RUNNING, 2)
    return demo


# ---------------------------------------------------------------------- frozen world
#
# Screenshots and snapshot tests need the same pixels every time: what the service
# stamps (clock, run ids, host name, pid) is replaced while seeding, and the app is
# given a fixed "now". Only the demo uses this; the product never does.

FROZEN_START = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC


class FrozenClock:
    """`time.time()` stand-in: starts at a fixed instant, advances a little per call."""

    def __init__(self, start: float = FROZEN_START, step: float = 0.35) -> None:
        self.now = start
        self.step = step

    def time(self) -> float:
        self.now += self.step
        return self.now


class _FrozenOs:
    """The `os` module, but with a fixed pid (shown in the Agents pane)."""

    def __init__(self, pid: int) -> None:
        self._pid = pid

    def getpid(self) -> int:
        return self._pid

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


@contextmanager
def frozen_service(seed: int = 7) -> Iterator[FrozenClock]:
    """While active, the service's clock, run ids, host name and pid are deterministic."""
    import launch_tui.core.facade.parts as parts_module

    clock = FrozenClock()
    rng = random.Random(seed)
    alphabet = string.ascii_lowercase + string.digits

    def run_id() -> str:
        return rng.choice(string.ascii_lowercase) + "".join(rng.choice(alphabet)
                                                            for _ in range(7))

    saved = {name: getattr(parts_module, name) for name in ("time", "new_run_id", "socket",
                                                              "os")}
    parts_module.time = clock  # type: ignore[assignment]
    parts_module.new_run_id = run_id
    parts_module.socket = SimpleNamespace(gethostname=lambda: "demo-host")  # type: ignore[assignment]
    parts_module.os = _FrozenOs(4242)  # type: ignore[assignment]
    try:
        yield clock
    finally:
        for name, value in saved.items():
            setattr(parts_module, name, value)


def seed_frozen_showcase(home: Path) -> float:
    """Seed the showcase into `home` deterministically; return the 'now' to show it at."""
    os.environ["TZ"] = "UTC"
    time.tzset()

    async def seed() -> None:
        service = await LaunchService.open(home=home)
        try:
            await seed_showcase(service, home / "demo-src", ts=FROZEN_START)
        finally:
            await service.close()

    with frozen_service() as clock:
        asyncio.run(seed())
        return clock.now + 7.0
