"""What the harness kubelet does with a Job's pods: one behaviour per Job, picked by
`kubelet.behaviour(job_manifest)`. Each is a dataclass whose `run(ctx)` drives one
pod through the statuses a real kubelet and scheduler would write (tests/kube/kubelet.py
turns the pods' ends into the Job's status).

`After(first, seconds, then)` scripts steps: e.g. Unschedulable for 2 s, then Succeed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tests.kube.kubelet import Behaviour, condition

if TYPE_CHECKING:
    from tests.kube.kubelet import PodCtx


async def _run_lines(ctx: PodCtx, lines: Sequence[str], pause_s: float = 0.0) -> None:
    ctx.running()
    for line in lines:
        ctx.log(line)
        if pause_s:
            await ctx.sleep(pause_s)


@dataclass
class Succeed(Behaviour):
    """Running, prints `lines`, waits `delay_s`, exits 0 (Completed)."""

    lines: Sequence[str] = ()
    delay_s: float = 0.0
    line_pause_s: float = 0.0

    async def run(self, ctx: PodCtx) -> None:
        await asyncio.sleep(0)
        await _run_lines(ctx, self.lines, self.line_pause_s)
        await ctx.sleep(self.delay_s)
        ctx.terminate(0)


@dataclass
class Fail(Behaviour):
    """Running, prints `lines`, exits `exit_code` with `reason` (Error)."""

    exit_code: int = 1
    lines: Sequence[str] = ()
    reason: str = "Error"
    message: str = ""
    delay_s: float = 0.0

    async def run(self, ctx: PodCtx) -> None:
        await asyncio.sleep(0)
        await _run_lines(ctx, self.lines)
        await ctx.sleep(self.delay_s)
        ctx.terminate(self.exit_code, self.reason, self.message)


@dataclass
class RunForever(Behaviour):
    """Running, prints `lines` (one per `line_pause_s`), until the pod is deleted."""

    lines: Sequence[str] = ()
    line_pause_s: float = 0.0

    async def run(self, ctx: PodCtx) -> None:
        await asyncio.sleep(0)
        await _run_lines(ctx, self.lines, self.line_pause_s)
        await ctx.until_deleted()


@dataclass
class OOMKilled(Behaviour):
    """Running, prints `lines`, killed by the kernel: exit 137, reason OOMKilled."""

    lines: Sequence[str] = ()
    delay_s: float = 0.0

    async def run(self, ctx: PodCtx) -> None:
        await asyncio.sleep(0)
        await _run_lines(ctx, self.lines)
        await ctx.sleep(self.delay_s)
        ctx.terminate(137, "OOMKilled")


@dataclass
class Unschedulable(Behaviour):
    """Pending with PodScheduled=False/Unschedulable and the scheduler's message, plus a
    FailedScheduling Event; no node, so no log. Until deleted (or an `After`)."""

    message: str = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."

    async def run(self, ctx: PodCtx) -> None:
        await asyncio.sleep(0)
        ctx.unschedulable(self.message)
        await ctx.until_deleted()


@dataclass
class ImagePullBackOff(Behaviour):
    """Scheduled; the container waits with ErrImagePull (`message`), then after
    `backoff_s` with ImagePullBackOff, and stays so."""

    message: str = "rpc error: code = NotFound desc = failed to pull and unpack image: not found"
    backoff_s: float = 0.2

    async def run(self, ctx: PodCtx) -> None:
        await asyncio.sleep(0)
        image = ctx.container.get("image", "")
        ctx.waiting("ErrImagePull", self.message)
        await ctx.sleep(self.backoff_s)
        ctx.waiting("ImagePullBackOff", f'Back-off pulling image "{image}": ErrImagePull: '
                                        f"{self.message}")
        await ctx.until_deleted()


@dataclass
class DeadlineExceeded(Behaviour):
    """Running with `lines`; after `after_s` (default: the Job's activeDeadlineSeconds,
    else 0.2 s) the Job controller fails the Job (FailureTarget, then Failed, reason
    DeadlineExceeded) and deletes its pods."""

    lines: Sequence[str] = ()
    after_s: float | None = None

    async def run(self, ctx: PodCtx) -> None:
        await asyncio.sleep(0)
        await _run_lines(ctx, self.lines)
        after = self.after_s
        if after is None:
            after = float(ctx.job["spec"].get("activeDeadlineSeconds") or 0.2)
        await ctx.sleep(after)
        ctx.kubelet.fail_job(ctx.run, "DeadlineExceeded",
                             "Job was active longer than specified deadline")


@dataclass
class Evicted(Behaviour):
    """Running with `lines`, then disrupted: DisruptionTarget=True (EvictionByEvictionAPI),
    container terminated exit 143, phase Failed. The Job fails with PodFailurePolicy if
    its podFailurePolicy has a FailJob rule on DisruptionTarget, else by the backoff limit
    (BackoffLimitExceeded with backoffLimit 0); an Ignore rule gets a new pod."""

    lines: Sequence[str] = ()
    after_s: float = 0.0
    reason: str = "EvictionByEvictionAPI"
    message: str = "Eviction API: evicting"
    times: int | None = None  # disrupt only the first N pods of the Job (then Succeed)
    _count: list[int] = field(default_factory=lambda: [0], repr=False)

    async def run(self, ctx: PodCtx) -> None:
        await asyncio.sleep(0)
        self._count[0] += 1
        if self.times is not None and self._count[0] > self.times:
            await Succeed(self.lines).run(ctx)
            return
        await _run_lines(ctx, self.lines)
        await ctx.sleep(self.after_s)
        ctx.terminate(143, "Error", conditions=[condition(
            "DisruptionTarget", reason=self.reason, message=self.message)])


@dataclass
class Preempted(Evicted):
    """As Evicted, with reason PreemptionByScheduler."""

    reason: str = "PreemptionByScheduler"
    message: str = "standin-node: preempting to accommodate a higher priority pod"


@dataclass
class After(Behaviour):
    """Behave as `first` for `seconds`, then as `then` (the same pod)."""

    first: Behaviour
    seconds: float
    then: Behaviour

    async def run(self, ctx: PodCtx) -> None:
        task = asyncio.get_running_loop().create_task(self.first.run(ctx))
        try:
            await asyncio.wait_for(asyncio.shield(task), self.seconds)
            return  # `first` ended the pod on its own
        except TimeoutError:
            task.cancel()
        if ctx.deleted.is_set():
            return
        await self.then.run(ctx)


from tests.kube.dockerrun import RunInDocker  # noqa: E402  (re-exported here)

__all__ = ["After", "Behaviour", "DeadlineExceeded", "Evicted", "Fail", "ImagePullBackOff",
           "OOMKilled", "Preempted", "RunForever", "RunInDocker", "Succeed", "Unschedulable"]
