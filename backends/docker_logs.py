"""A container's log as the agent stores it: one LogChunk per line, stdout and
stderr kept apart, with the daemon's timestamps.

docker-py's `logs()` strips the frame headers that say whether a line came from
stdout or stderr, so this reads the multiplexed stream itself, in a dedicated
thread (`iterate_in_thread`), and reassembles lines Docker split over frames.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from launch_tui.backends.docker_build import iterate_in_thread
from launch_tui.core.backend import LogChunk
from launch_tui.core.errors import BackendError
from launch_tui.core.model import LogStream

if TYPE_CHECKING:
    import docker

_STREAMS = {1: LogStream.STDOUT, 2: LogStream.STDERR}


def parse_ts(stamp: str) -> float:
    """Seconds since the epoch of a Docker timestamp (RFC 3339, nanoseconds); 0 if unreadable."""
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return 0.0


async def container_log(
    client: docker.DockerClient, name: str, follow: bool
) -> AsyncIterator[LogChunk]:
    """Lines from the container's start; with follow, until it exits. None if it is gone."""
    partial: dict[int, str] = {}
    try:
        async for stream_id, data in iterate_in_thread(
            lambda: _open_log_frames(client, name, follow), name=f"docker-logs-{name}"
        ):
            stamp, _, text = data.decode("utf-8", "replace").partition(" ")
            # Docker splits lines over 16 KiB into frames without a newline.
            text = partial.pop(stream_id, "") + text
            if not text.endswith("\n"):
                partial[stream_id] = text
                continue
            stream = _STREAMS.get(stream_id, LogStream.STDERR)
            ts = parse_ts(stamp)
            for line in text[:-1].split("\n"):
                yield LogChunk(stream=stream, text=line.rstrip("\r"), ts=ts)
    except BackendError:
        raise
    except Exception as exc:
        import docker

        if isinstance(exc, docker.errors.NotFound):
            return  # no container, no lines; status() says why
        if isinstance(exc, docker.errors.DockerException):
            why = str(getattr(exc, "explanation", None) or exc).rstrip(".")
            raise BackendError(f"docker: cannot read the logs of {name}: {why}.") from exc
        raise
    for stream_id, text in partial.items():
        yield LogChunk(stream=_STREAMS.get(stream_id, LogStream.STDERR), text=text, ts=0.0)


def _open_log_frames(
    client: docker.DockerClient, name: str, follow: bool
) -> Iterator[tuple[int, bytes]]:
    """(stream id, payload) frames of a container's log, from its first line.

    Each frame is an 8-byte header (stream id, payload size) then the payload.
    Wrapped in CancellableStream so closing it from another thread unblocks a
    follow that is waiting for output.
    """
    from docker.types import CancellableStream

    api = client.api
    params = {"stdout": 1, "stderr": 1, "timestamps": 1, "follow": int(follow), "tail": "all"}
    # timeout=None: a followed job may print nothing for hours.
    res = api._get(api._url("/containers/{0}/logs", name), params=params, stream=True, timeout=None)
    api._raise_for_status(res)

    def frames() -> Iterator[tuple[int, bytes]]:
        while True:
            header = res.raw.read(8)
            if len(header) < 8:
                return
            stream_id, size = struct.unpack(">BxxxL", header)
            data = res.raw.read(size) if size else b""
            if size and len(data) < size:
                return
            yield stream_id, data

    return CancellableStream(frames(), res)
