"""`GET /api/v1/namespaces/{ns}/pods/{name}/log`, which kmock 0.8 does not serve.

The harness's kubelet records each container's output line by line with the time it
was produced; this module keeps those lines and answers the log endpoint the way the
API server does: `container`, `follow` (a chunked stream that ends when the container
terminates or the pod goes), `timestamps` (the kubelet's fixed nine-digit RFC 3339),
`sinceTime`, `sinceSeconds`, `tailLines`, and the 400/404 answers for pods that
cannot have a log yet.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp.web

from tests.kube.apimachinery import (
    ApiError,
    bad_request,
    not_found,
    now_ns,
    parse_rfc3339_ns,
    rfc3339_nano_fixed,
)

if TYPE_CHECKING:
    from tests.kube.emulator import StandInEmulator

PULLING = ("ErrImagePull", "ImagePullBackOff")


@dataclass
class PodLogs:
    """(namespace, pod) → container → [(nanoseconds, line)]."""

    lines: dict[tuple[str, str], dict[str, list[tuple[int, str]]]] = field(default_factory=dict)

    def reset(self, ns: str, pod: str) -> None:
        self.lines[(ns, pod)] = {}

    def drop(self, ns: str, pod: str) -> None:
        self.lines.pop((ns, pod), None)

    def append(self, ns: str, pod: str, container: str, line: str,
               ts_ns: int | None = None) -> None:
        per_pod = self.lines.get((ns, pod))
        if per_pod is not None:  # a deleted pod keeps no log
            per_pod.setdefault(container, []).append((ts_ns or now_ns(), line))

    def of(self, ns: str, pod: str, container: str) -> list[tuple[int, str]]:
        return self.lines.get((ns, pod), {}).get(container, [])


def _container_state(pod: dict[str, Any], container: str) -> tuple[dict[str, Any], bool]:
    """(its current state, whether it ever started)."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == container:
            state = cs.get("state") or {}
            ran = "waiting" not in state or bool((cs.get("lastState") or {}).get("terminated"))
            return state, ran
    return {}, False


def _check(pod: dict[str, Any], name: str, container: str | None) -> str:
    names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    if not container:
        if len(names) != 1:
            raise bad_request(f"a container name must be specified for pod {name}, "
                              f"choose one of: [{' '.join(map(str, names))}]")
        container = str(names[0])
    if container not in names:
        raise bad_request(f"container {container} is not valid for pod {name}")
    if not (pod.get("spec") or {}).get("nodeName"):
        raise bad_request(f"pod {name} does not have a host assigned")
    state, ran = _container_state(pod, container)
    if not ran:
        waiting = state.get("waiting") or {}
        why = waiting.get("reason") or "ContainerCreating"
        if why in PULLING:
            why = "trying and failing to pull image"
        raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {why}')
    return container


async def serve(emu: StandInEmulator, raw: aiohttp.web.BaseRequest, ns: str, name: str,
                q: Any) -> aiohttp.web.StreamResponse:
    from tests.kube.emulator import BY_PLURAL

    kind = BY_PLURAL["pods"]
    try:
        pod = emu.find(kind, ns, name)
        if pod is None:
            raise not_found("", "pods", name)
        container = _check(pod, name, q.get("container"))
    except ApiError as exc:
        return aiohttp.web.json_response(exc.status(), status=exc.code)
    uid = pod["metadata"]["uid"]
    stamps = q.get("timestamps") in ("true", "True", "1")
    since = None
    if q.get("sinceTime"):
        since = parse_rfc3339_ns(q["sinceTime"])
    elif q.get("sinceSeconds"):
        since = now_ns() - int(q["sinceSeconds"]) * 1_000_000_000
    lines = emu.logs.of(ns, name, container)
    start = 0
    if since is not None:
        start = next((i for i, (ts, _) in enumerate(lines) if ts >= since), len(lines))
    if q.get("tailLines"):
        start = max(start, len(lines) - int(q["tailLines"]))

    resp = aiohttp.web.StreamResponse(headers={"Content-Type": "text/plain"})
    await resp.prepare(raw)

    def render(ts: int, line: str) -> bytes:
        return ((rfc3339_nano_fixed(ts) + " " if stamps else "") + line + "\n").encode()

    try:
        follow = q.get("follow") in ("true", "True", "1")
        pos = start
        while True:
            wake = emu.wake()
            lines = emu.logs.of(ns, name, container)
            for ts, line in lines[pos:]:
                await resp.write(render(ts, line))
            pos = len(lines)
            if not follow or emu.closing:
                break
            current = emu.find(kind, ns, name)
            if current is None or current["metadata"]["uid"] != uid:
                break  # the pod was deleted
            state, _ = _container_state(current, container)
            if "terminated" in state and len(emu.logs.of(ns, name, container)) == pos:
                break
            if raw.transport is None or raw.transport.is_closing():
                break
            try:
                await asyncio.wait_for(wake.wait(), 1.0)
            except TimeoutError:
                pass
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        pass
    return resp
