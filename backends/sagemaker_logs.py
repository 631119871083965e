"""A training job's output from CloudWatch Logs, every stream of it.

SageMaker writes each instance's output to its own stream of the log group
`/aws/sagemaker/TrainingJobs`, named `{job}/algo-{n}-{epoch}` (a multi-instance
job has several; a restarted one gets more). Each stream is read from its head
with `GetLogEvents(startFromHead)`, then followed by its forward token, which
comes back unchanged once the stream has nothing newer. New streams are looked
for on each pass (`DescribeLogStreams` by the job's prefix).

Lines are labelled with their stream's name after the job's (`algo-1-1712345678`),
so a restarted agent, which replays from the head, skips what it stored per
stream however the streams interleave. CloudWatch has no stdout/stderr split:
every line is stdout.

Passes are spaced with back-off while nothing arrives; once the job has ended,
passes go on (`settle_s` apart) until one finds nothing new, since CloudWatch
may take a few seconds to show a job's last lines.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from launch_tui.backends import sagemaker_aws as sa
from launch_tui.backends.sagemaker_rules import LOG_GROUP
from launch_tui.core.backend import LogChunk
from launch_tui.core.model import LogStream

MAX_PAGES_PER_PASS = 200  # per stream; a flood is read on over several passes


class TrainingLogs:
    def __init__(self, aws: sa.Aws, job: str, *, poll_s: tuple[float, float],
                 settle_s: float) -> None:
        self.client = aws.client("logs")
        self.job = job
        self.prefix = f"{job}/"
        self.poll_s = poll_s
        self.settle_s = settle_s
        self.tokens: dict[str, str | None] = {}

    async def lines(self, follow: bool, ended: Callable[[], Awaitable[bool]]
                    ) -> AsyncIterator[LogChunk]:
        delay = self.poll_s[0]
        after_end = 0
        while True:
            end_seen = follow and await ended()  # looked at before the pass reads
            got = 0
            for stream in await self._streams():
                async for chunk in self._read(stream):
                    got += 1
                    yield chunk
            if not follow:
                return
            if end_seen:
                after_end += 1
                if got == 0 and after_end >= 2:
                    return
                await asyncio.sleep(self.settle_s)
                continue
            if got:
                delay = self.poll_s[0]
            else:
                await asyncio.sleep(delay)
                delay = min(self.poll_s[1], delay * 1.5)

    async def _streams(self) -> list[str]:
        names: list[str] = []
        token: str | None = None
        while True:
            kw: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamNamePrefix": self.prefix}
            if token:
                kw["nextToken"] = token
            try:
                page = await sa.call("list the job's log streams", self.client.describe_log_streams,
                                     **kw)
            except Exception as exc:
                if sa.error_code(exc) == "ResourceNotFoundException":
                    return []  # no job has written to the log group yet
                if sa.error_code(exc):
                    raise sa.refused(f"list the log streams of {self.job}", exc) from exc
                raise
            names.extend(s["logStreamName"] for s in page.get("logStreams") or [])
            token = page.get("nextToken")
            if not token:
                return sorted(names)

    async def _read(self, stream: str) -> AsyncIterator[LogChunk]:
        label = stream[len(self.prefix):] if stream.startswith(self.prefix) else stream
        token = self.tokens.get(stream)
        for _ in range(MAX_PAGES_PER_PASS):
            kw: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": stream,
                                  "startFromHead": True}
            if token:
                kw["nextToken"] = token
            try:
                page = await sa.call(f"read log stream {stream}", self.client.get_log_events, **kw)
            except Exception as exc:
                if sa.error_code(exc):
                    raise sa.refused(f"read log stream {stream}", exc) from exc
                raise
            for event in page.get("events") or []:
                ts = float(event.get("timestamp") or 0) / 1000.0
                for line in str(event.get("message") or "").rstrip("\n").split("\n"):
                    yield LogChunk(LogStream.STDOUT, line.rstrip("\r"), ts, source=label)
            nxt = page.get("nextForwardToken")
            done = not nxt or nxt == token
            token = nxt or token
            self.tokens[stream] = token
            if done:
                return
