"""`RunInDocker`: the behaviour that really runs a pod's first container, on the test
suite's private Docker daemon (DOCKER_HOST, see scripts/test-services.sh env).

It does what a kubelet does for one container: pulls the image if absent (from the
loopback registry), resolves `env` values and `valueFrom.secretKeyRef` / `envFrom`
from Secrets in the stand-in (a missing one leaves the container waiting with
CreateContainerConfigError, retried until it appears), applies `command`/`args`,
`workingDir` and the memory limit, and records the output line by line as the pod's
log while it runs. Containers never get a network (`network_mode="none"`).
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.kube.apimachinery import now_ns
from tests.kube.emulator import BY_PLURAL
from tests.kube.kubelet import Behaviour

if TYPE_CHECKING:
    from tests.kube.kubelet import PodCtx

LABEL = "launch-tui.test/kube-standin"
_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def memory_bytes(quantity: str | int) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(quantity).strip())
    if m is None:
        raise ValueError(f"unsupported memory quantity {quantity!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2) or ""])


def _client() -> Any:
    import docker

    return docker.from_env(timeout=120)


def kill_all(ids: Iterable[str]) -> None:
    """Kill and remove these containers (the kubelet stopping)."""
    ids = list(ids)
    if not ids:
        return
    client = _client()
    for cid in ids:
        try:
            client.containers.get(cid).remove(force=True)
        except Exception:
            pass


class ConfigError(Exception):
    """What the kubelet reports as CreateContainerConfigError."""


def resolve_env(ctx: PodCtx) -> dict[str, str]:
    secrets = BY_PLURAL["secrets"]

    def secret(name: str) -> dict[str, Any] | None:
        return ctx.emu.find(secrets, ctx.ns, name)

    env: dict[str, str] = {}
    for src in ctx.container.get("envFrom") or []:
        ref = src.get("secretRef")
        if ref:
            obj = secret(ref["name"])
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'secret "{ref["name"]}" not found')
            for k, v in (obj.get("data") or {}).items():
                env[(src.get("prefix") or "") + k] = base64.b64decode(v).decode()
    for item in ctx.container.get("env") or []:
        ref = ((item.get("valueFrom") or {}).get("secretKeyRef"))
        if ref is None:
            env[item["name"]] = str(item.get("value", ""))
            continue
        obj = secret(ref["name"])
        data = (obj or {}).get("data") or {}
        if obj is None or ref["key"] not in data:
            if ref.get("optional"):
                continue
            raise ConfigError(f'secret "{ref["name"]}" not found' if obj is None else
                              f"couldn't find key {ref['key']} in Secret "
                              f"{ctx.ns}/{ref['name']}")
        env[item["name"]] = base64.b64decode(data[ref["key"]]).decode()
    return env


@dataclass
class RunInDocker(Behaviour):
    """Runs the pod's first container for real; see the module docstring."""

    pull: bool = True
    config_retry_s: float = 0.5

    async def run(self, ctx: PodCtx) -> None:
        await asyncio.sleep(0)
        c = ctx.container
        ctx.schedule()
        client = await asyncio.to_thread(_client)
        if self.pull:
            await asyncio.to_thread(self._ensure_image, client, c["image"])
        while True:
            try:
                env = resolve_env(ctx)
                break
            except ConfigError as exc:
                ctx.waiting("CreateContainerConfigError", str(exc))
                await ctx.sleep(self.config_retry_s)
        kwargs: dict[str, Any] = {
            "image": c["image"], "environment": env, "network_mode": "none",
            "detach": True, "labels": {LABEL: f"{ctx.ns}/{ctx.name}"},
            "name": f"kube-standin-{ctx.ns}-{ctx.name}-{ctx.uid[:8]}"}
        if c.get("command"):
            kwargs["entrypoint"] = list(c["command"])
        if c.get("args"):
            kwargs["command"] = list(c["args"])
        if c.get("workingDir"):
            kwargs["working_dir"] = c["workingDir"]
        limit = ((c.get("resources") or {}).get("limits") or {}).get("memory")
        if limit:
            kwargs["mem_limit"] = kwargs["memswap_limit"] = memory_bytes(limit)
        container = await asyncio.to_thread(client.containers.run, **kwargs)
        ctx.kubelet.containers.add(container.id)
        try:
            await self._follow(ctx, container)
        finally:
            ctx.kubelet.containers.discard(container.id)
            await asyncio.to_thread(self._remove, container)

    @staticmethod
    def _ensure_image(client: Any, image: str) -> None:
        import docker.errors

        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            client.images.pull(image)

    @staticmethod
    def _remove(container: Any) -> None:
        try:
            container.remove(force=True)
        except Exception:
            pass

    async def _follow(self, ctx: PodCtx, container: Any) -> None:
        loop = asyncio.get_running_loop()
        ctx.running()
        lines: list[str] = []

        def add(line: str, ts: int) -> None:
            lines.append(line)
            try:
                ctx.log(line, ts)
            except Exception:
                pass  # the pod went away meanwhile

        def pump() -> None:
            buf = b""
            try:
                for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
                    buf += chunk
                    while b"\n" in buf:
                        raw, buf = buf.split(b"\n", 1)
                        loop.call_soon_threadsafe(add, raw.decode(errors="replace"), now_ns())
                if buf:
                    loop.call_soon_threadsafe(add, buf.decode(errors="replace"), now_ns())
            except Exception:
                pass  # the container was removed under the stream

        pumping = asyncio.ensure_future(asyncio.to_thread(pump))
        waiting = asyncio.ensure_future(asyncio.to_thread(container.wait))
        deleted = asyncio.ensure_future(ctx.deleted.wait())
        await asyncio.wait([waiting, deleted], return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():  # the pod was deleted: the kubelet kills the container
            deleted.cancel()
            await asyncio.to_thread(self._remove, container)
            return
        deleted.cancel()
        result = waiting.result()
        await pumping
        await asyncio.sleep(0)  # the pump's last lines are queued before this point
        state = (await asyncio.to_thread(client_state, container))
        code = int(result.get("StatusCode", 1))
        reason = "OOMKilled" if state.get("OOMKilled") else ("Completed" if code == 0
                                                            else "Error")
        message = ""
        if code != 0 and c_policy(ctx) == "FallbackToLogsOnError":
            message = "\n".join(lines[-80:])[-2048:]
        ctx.terminate(137 if reason == "OOMKilled" and code == 0 else code, reason, message)


def client_state(container: Any) -> dict[str, Any]:
    container.reload()
    return dict(container.attrs.get("State") or {})


def c_policy(ctx: PodCtx) -> str:
    return str(ctx.container.get("terminationMessagePolicy") or "File")
