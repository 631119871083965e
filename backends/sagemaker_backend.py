"""Runs as Amazon SageMaker training jobs, one per run, with boto3.

The training job is the record: its name comes from the job and the run id
(`sagemaker_rules.job_name`), so a second submit of a run meets the first job
(`ResourceInUse`) and adopts it, and a restarted agent, or another agent taking
the run over, finds it again by that name. Each job is tagged with the run id,
queue and project (`launch-tui:run-id`, …).

Status comes from polling `DescribeTrainingJob` with back-off (SageMaker cannot
push; `BackendBase.watch`): `InProgress` is running, with the SecondaryStatus
(Starting, Downloading, Training, Uploading) and its message as the stage shown
on the run. Output comes from every CloudWatch stream of the job
(`sagemaker_logs`). Cancel is `StopTrainingJob`: SageMaker itself gives the
container 120 s between SIGTERM and SIGKILL, so the agent's grace is not used.

The run's environment reaches the job as `Environment`. SageMaker has no secret
references, so secret-looking values are in the job's description for anyone
allowed to describe it; launch-tui never logs them.

Settings (`[backends.sagemaker]` in settings.toml): `region`, `profile`,
`endpoint_url` (see sagemaker_aws), `poll_max_s` (the slowest status poll,
default 10) and `log_settle_s` (how long to wait for CloudWatch's last lines of
an ended job, default 3). A queue config may set `region`, `profile`,
`s3_output_path`, `ecr_repository` and `builder.destination`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from launch_tui.backends import sagemaker_aws as sa
from launch_tui.backends import sagemaker_rules as rules
from launch_tui.backends.sagemaker_logs import TrainingLogs
from launch_tui.backends.schemas import SAGEMAKER
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

# How long status polls may keep failing (an unreachable endpoint, throttling past
# boto3's own retries) before the run is given up on.
STATUS_OUTAGE_S = 300.0


class SageMakerBackend(BackendBase):
    """The `sagemaker` target resource."""

    name = "sagemaker"
    resource_schema: dict[str, Any] = SAGEMAKER

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx
        self._aws: dict[sa.Target, sa.Aws] = {}
        ceiling = float(ctx.settings.get("poll_max_s") or 10.0)
        self.watch_poll_s = (min(0.5, ceiling), ceiling)
        self.log_settle_s = float(ctx.settings.get("log_settle_s", 3.0))

    # ---------------------------------------------------------- where

    async def aws(self, target: sa.Target) -> sa.Aws:
        if target not in self._aws:
            self._aws[target] = await asyncio.to_thread(sa.Aws, target)
        return self._aws[target]

    def _target_of(self, handle: RunHandle) -> sa.Target:
        return sa.Target(region=handle.data.get("region"), profile=handle.data.get("profile"),
                         endpoint_url=self.ctx.settings.get("endpoint_url") or None)

    async def identity(self, aws: sa.Aws) -> sa.Identity:
        try:
            return await sa.call("read the AWS account (sts:GetCallerIdentity)", aws.identity)
        except BackendError:
            raise
        except Exception as exc:
            raise sa.refused("read the AWS account (sts:GetCallerIdentity)", exc) from exc

    # ---------------------------------------------------------- submit

    async def submit(self, spec: RunSpec, build: BuildResult = NOTHING_BUILT) -> RunHandle:
        as_given = spec.source.get("image") if spec.kind is JobKind.IMAGE else None
        image = build.image or spec.image or as_given
        rules.check_sagemaker_args(spec.resource_args, spec.queue_config, spec.queue)
        target = sa.target_for(spec.queue_config, self.ctx.settings)
        aws = await self.aws(target)
        who = await self.identity(aws)
        request = rules.training_request(spec, str(image) if image else None,
                                         account=who.account, partition=who.partition)
        name = request["TrainingJobName"]
        client = aws.client("sagemaker")
        try:
            await sa.call(f"create training job {name}", client.create_training_job, **request)
        except BackendError:
            raise
        except Exception as exc:
            # ResourceInUse: this run's job exists (a second submit); adopt it.
            if sa.error_code(exc) != "ResourceInUse":
                raise sa.refused(f"create training job {name}", exc) from exc
        return self._handle(spec.run_id, name, aws)

    def _handle(self, run_id: str, name: str, aws: sa.Aws) -> RunHandle:
        data: dict[str, Any] = {"job": name, "region": aws.region}
        if aws.target.profile:
            data["profile"] = aws.target.profile
        return RunHandle(backend=self.name, run_id=run_id, data=data)

    # ---------------------------------------------------------- status

    async def describe(self, handle: RunHandle) -> dict[str, Any] | None:
        """The job's description; None when SageMaker has no such job."""
        aws = await self.aws(self._target_of(handle))
        name = str(handle.data["job"])
        return await self._describe(aws, name)

    async def _describe(self, aws: sa.Aws, name: str) -> dict[str, Any] | None:
        client = aws.client("sagemaker")
        try:
            return await sa.call(f"describe training job {name}", client.describe_training_job,
                                 TrainingJobName=name)
        except BackendError:
            raise
        except Exception as exc:
            if sa.error_code(exc) in ("ValidationException", "ResourceNotFound") and (
                    "not find" in sa.error_message(exc) or "not exist" in sa.error_message(exc)):
                return None
            raise sa.refused(f"describe training job {name}", exc) from exc

    async def status(self, handle: RunHandle) -> RunStatus:
        desc = await self.describe(handle)
        if desc is None:
            return RunStatus(RunState.CRASHED, f"SageMaker has no training job "
                                               f"{handle.data['job']} any more")
        return rules.job_status(desc)

    async def watch(self, handle: RunHandle) -> AsyncIterator[RunStatus]:
        """`BackendBase.watch`'s polling with back-off, riding out a passing outage."""
        delay, ceiling = self.watch_poll_s
        last: RunStatus | None = None
        failing_since: float | None = None
        while True:
            try:
                current = await self.status(handle)
                failing_since = None
            except BackendError:
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > STATUS_OUTAGE_S:
                    raise
                await asyncio.sleep(ceiling)
                continue
            if current != last:
                yield current
                last = current
                delay = self.watch_poll_s[0]
            if current.state.terminal:
                return
            await asyncio.sleep(delay)
            delay = min(ceiling, delay * 1.5)

    # ---------------------------------------------------------- logs

    async def logs(self, handle: RunHandle, follow: bool = True, *,
                   lagging: Lagging | None = None, stored: int = 0
                   ) -> AsyncIterator[LogChunk]:
        """Every CloudWatch stream of the job, labelled by stream, from the head."""
        aws = await self.aws(self._target_of(handle))
        reader = TrainingLogs(aws, str(handle.data["job"]), poll_s=self.watch_poll_s,
                              settle_s=self.log_settle_s)

        async def ended() -> bool:
            try:
                return (await self.status(handle)).state.terminal
            except BackendError:
                return False  # the watch says when an outage lasts too long

        lines = reader.lines(follow, ended)
        async with contextlib.aclosing(lines):
            async for chunk in lines:
                yield chunk

    def output_location(self, handle: RunHandle) -> str | None:
        return (f"CloudWatch Logs {rules.LOG_GROUP}, streams {handle.data.get('job')}/* "
                f"({handle.data.get('region')})")

    # ---------------------------------------------------------- cancel, find

    async def cancel(self, handle: RunHandle, grace_s: float) -> None:
        """StopTrainingJob; SageMaker sends SIGTERM, then SIGKILL after 120 s."""
        aws = await self.aws(self._target_of(handle))
        name = str(handle.data["job"])
        try:
            await sa.call(f"stop training job {name}", aws.client("sagemaker").stop_training_job,
                          TrainingJobName=name)
        except BackendError:
            raise
        except Exception as exc:
            # Already stopping or ended: nothing to stop.
            if sa.error_code(exc) != "ValidationException":
                raise sa.refused(f"stop training job {name}", exc) from exc

    async def find(self, run_id: str, spec: RunSpec | None = None) -> RunHandle | None:
        """The run's training job, by the name its spec gives it, in its queue's region."""
        if spec is None:
            return None  # the name holds the job's name, and the region is the queue's
        aws = await self.aws(sa.target_for(spec.queue_config, self.ctx.settings))
        name = rules.job_name(spec)
        if await self._describe(aws, name) is None:
            return None
        return self._handle(run_id, name, aws)
