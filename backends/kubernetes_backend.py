"""Runs as Kubernetes `batch/v1` Jobs, one per run, with the official client.

The Job is the record: its name comes from the job and the run id
(`kubernetes_manifest.job_name`), so a second submit of a run finds the first
Job (409), and its `launch-tui/run-id` label lets a restarted agent, or another
agent taking the run over, find it again. Secrets the run needs (values whose
names look secret, registry credentials) live in per-run Secrets labelled as
launch-tui's, referenced by `secretKeyRef`/`imagePullSecrets`, and deleted once
the run ended.

Status comes from one watch per namespace (`kubernetes_watch`), output from every
pod's log stream (`kubernetes_logs`). Cancel deletes the Job with foreground
propagation, so its pods go with it. The client blocks: calls run in threads.

Settings (`[backends.kubernetes]` in settings.toml): `kubeconfig` (a path),
`context`, `image_pull_grace_s`, and `registry = {username, password_env}` for the
builder's pushes and the cluster's pulls. A queue config may set `context`,
`namespace`, `image_pull_grace_s`, `allow_privileged` and `builder.destination`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from launch_tui.backends import kubernetes_manifest as km
from launch_tui.backends.kubernetes_api import Cluster, Target, api_message, status_code
from launch_tui.backends.kubernetes_logs import PodLogs
from launch_tui.backends.kubernetes_status import DEFAULT_PULL_GRACE_S, PullClock, job_status
from launch_tui.backends.kubernetes_watch import NamespaceWatch, RunView
from launch_tui.backends.schemas import KUBERNETES
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


class KubernetesBackend(BackendBase):
    """The `kubernetes` target resource."""

    name = "kubernetes"
    resource_schema: dict[str, Any] = KUBERNETES

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx
        self._clusters: dict[Target, Cluster] = {}
        self._watches: dict[tuple[Target, str], NamespaceWatch] = {}
        self._pull_clocks: dict[str, PullClock] = {}
        registry = ctx.settings.get("registry") or {}
        self._registry: dict[str, Any] = registry if isinstance(registry, dict) else {}

    # ---------------------------------------------------------- where

    def _target(self, context: str | None) -> Target:
        path = self.ctx.settings.get("kubeconfig")
        return Target(kubeconfig=os.path.expanduser(str(path)) if path else None,
                      context=context or self.ctx.settings.get("context") or None)

    async def _cluster(self, target: Target) -> Cluster:
        if target not in self._clusters:
            self._clusters[target] = await asyncio.to_thread(Cluster, target)
        return self._clusters[target]

    async def _for_handle(self, handle: RunHandle) -> tuple[Cluster, str, str]:
        data = handle.data
        cluster = await self._cluster(self._target(data.get("context")))
        return cluster, str(data["namespace"]), str(data["job"])

    def _watch(self, cluster: Cluster, namespace: str) -> NamespaceWatch:
        key = (cluster.target, namespace)
        if key not in self._watches:
            self._watches[key] = NamespaceWatch(cluster, namespace)
        return self._watches[key]

    async def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """A client call in a thread; refusals and unreachable servers as one sentence."""
        try:
            return await asyncio.to_thread(fn, *args, **kw)
        except BackendError:
            raise
        except Exception as exc:
            if status_code(exc) is not None:
                raise
            raise BackendError(f"kubernetes: cannot {what}: {_unreachable(exc)}.") from exc

    # ---------------------------------------------------------- submit

    async def submit(self, spec: RunSpec, build: BuildResult = NOTHING_BUILT) -> RunHandle:
        from kubernetes.client.exceptions import ApiException

        as_given = spec.source.get("image") if spec.kind is JobKind.IMAGE else None
        image = build.image or spec.image or as_given
        if not image:
            raise BackendError("image: the run has no image to start; the kubernetes "
                               "builder must run first.")
        # Core refuses these at enqueue already; checked again for specs made elsewhere.
        km.check_kubernetes_args(spec.resource_args, spec.queue_config, queue=spec.queue)
        context = spec.queue_config.get("context")
        cluster = await self._cluster(self._target(context))
        namespace = cluster.namespace(spec.resource_args, spec.queue_config)
        _, secret_values = km.split_env(km.run_env(spec),
                                        tuple(spec.queue_config.get("secret_env") or ()))
        secrets: list[dict[str, Any]] = []
        env_ref = pull_ref = None
        if secret_values:
            env_ref = km.secret_name_for(spec.run_id, "env")
            secrets.append(km.env_secret(spec, env_ref, secret_values))
        creds = self._pull_credentials(str(image))
        if creds is not None:
            pull_ref = km.secret_name_for(spec.run_id, "pull")
            secrets.append(km.pull_secret(spec, pull_ref, *creds))
        job = km.build_job(spec, str(image), agent=self.ctx.agent, secret_ref=env_ref,
                           pull_secret=pull_ref)
        for secret in secrets:
            await self._create(cluster, namespace, "secret", secret)
        try:
            await self._call("create the Job", cluster.call, cluster.batch.create_namespaced_job,
                             namespace, job)
        except ApiException as exc:
            if status_code(exc) != 409:  # 409: this run's Job exists (a second submit)
                raise BackendError(f"kubernetes: cannot create Job {job['metadata']['name']} "
                                   f"in namespace {namespace}: {api_message(exc)}.") from exc
        return self._handle(spec.run_id, namespace, job["metadata"]["name"], context,
                            [s["metadata"]["name"] for s in secrets],
                            spec.queue_config.get("image_pull_grace_s"))

    async def _create(self, cluster: Cluster, namespace: str, kind: str,
                      body: dict[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            await self._call(f"create {kind} {body['metadata']['name']}", cluster.call,
                             cluster.core.create_namespaced_secret, namespace, body)
        except ApiException as exc:
            if status_code(exc) != 409:  # made by an earlier submit of this run: same values
                raise BackendError(
                    f"kubernetes: cannot create {kind} {body['metadata']['name']} in namespace "
                    f"{namespace}: {api_message(exc)}.") from exc

    def _pull_credentials(self, image: str) -> tuple[str, str, str] | None:
        """(registry, username, password) when the agent has credentials for the
        registry the image is in; the cluster gets them as an imagePullSecret."""
        user = self._registry.get("username")
        password = self._registry.get("password")
        if not password and self._registry.get("password_env"):
            password = os.environ.get(str(self._registry["password_env"]))
        dest = str(self._registry.get("destination") or "")
        host = image.split("/", 1)[0]
        if not (user and password) or ("." not in host and ":" not in host
                                       and host != "localhost"):
            return None
        if dest and dest.split("/", 1)[0] != host and not self._registry.get("any_registry"):
            return None
        return host, str(user), str(password)

    def _handle(self, run_id: str, namespace: str, job: str, context: str | None,
                secrets: list[str], pull_grace_s: float | None = None) -> RunHandle:
        data: dict[str, Any] = {"namespace": namespace, "job": job, "secrets": secrets}
        if context:
            data["context"] = context
        if pull_grace_s:
            data["image_pull_grace_s"] = pull_grace_s
        return RunHandle(backend=self.name, run_id=run_id, data=data)

    # ---------------------------------------------------------- status

    def _grace(self, handle: RunHandle) -> float:
        value = handle.data.get("image_pull_grace_s") or self.ctx.settings.get(
            "image_pull_grace_s") or DEFAULT_PULL_GRACE_S
        return float(value)

    async def status(self, handle: RunHandle) -> RunStatus:
        cluster, namespace, _ = await self._for_handle(handle)
        async with self._watch(cluster, namespace).follow(handle.run_id) as view:
            return self._look(handle, view)[0]

    def _look(self, handle: RunHandle, view: RunView) -> tuple[RunStatus, float | None]:
        clock = self._pull_clocks.setdefault(handle.run_id, PullClock())
        job = view.job if view.job is not None else view.job_deleted
        return job_status(job, view.pods.values(), deleted=view.job is None, now=time.time(),
                          clock=clock, pull_grace_s=self._grace(handle))

    async def watch(self, handle: RunHandle) -> AsyncIterator[RunStatus]:
        """The run's status each time the watch shows its Job or pods change."""
        cluster, namespace, _ = await self._for_handle(handle)
        try:
            async with self._watch(cluster, namespace).follow(handle.run_id) as view:
                current: RunStatus | None = None
                while True:
                    seen = view.version
                    new, due = self._look(handle, view)
                    if new != current:
                        if (current is None and new.state.terminal
                                and new.state != RunState.STOPPED and view.pods):
                            # Ended before this first look: it did run (a `running` time).
                            yield RunStatus(RunState.RUNNING)
                        current = new
                        yield current
                    if current.state.terminal:
                        return
                    changed = view.changed_since(seen)
                    timeout = None if due is None else max(0.0, due - time.time()) + 0.05
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed, timeout)
        finally:
            self._pull_clocks.pop(handle.run_id, None)

    # ---------------------------------------------------------- logs

    async def logs(self, handle: RunHandle, follow: bool = True, *,
                   lagging: Lagging | None = None, stored: int = 0
                   ) -> AsyncIterator[LogChunk]:
        """Every pod's lines, labelled with the pod's name, from the start of the run."""
        cluster, namespace, _ = await self._for_handle(handle)
        async with self._watch(cluster, namespace).follow(handle.run_id) as view:
            pods = PodLogs(cluster, namespace, view, follow)

            def ended() -> bool:
                return self._look(handle, view)[0].state.terminal

            lines = pods.lines(ended)
            async with contextlib.aclosing(lines):
                async for chunk in lines:
                    yield chunk

    # ---------------------------------------------------------- cancel, find, cleanup

    async def cancel(self, handle: RunHandle, grace_s: float) -> None:
        """Delete the Job in the foreground: its pods get `grace_s` to stop, and the
        Job goes only once they are gone (no orphaned pods)."""
        await self._delete_job(handle, grace_s)

    async def _delete_job(self, handle: RunHandle, grace_s: float) -> None:
        from kubernetes.client.exceptions import ApiException

        cluster, namespace, job = await self._for_handle(handle)
        try:
            await self._call(f"delete Job {job}", cluster.call,
                             cluster.batch.delete_namespaced_job, job, namespace,
                             propagation_policy="Foreground",
                             grace_period_seconds=max(0, int(grace_s)))
        except ApiException as exc:
            if status_code(exc) != 404:
                raise BackendError(f"kubernetes: cannot delete Job {job} in namespace "
                                   f"{namespace}: {api_message(exc)}.") from exc

    async def find(self, run_id: str, spec: RunSpec | None = None) -> RunHandle | None:
        """The run's Job, by its `launch-tui/run-id` label, where the run's queue puts it."""
        from kubernetes.client.exceptions import ApiException

        if spec is None:
            return None  # without the queue there is no telling which cluster to ask
        context = spec.queue_config.get("context")
        cluster = await self._cluster(self._target(context))
        namespace = cluster.namespace(spec.resource_args, spec.queue_config)
        selector = f"{km.LABEL_RUN}={km.label_value(run_id)}"
        try:
            jobs = await self._call("list Jobs", cluster.call,
                                    cluster.batch.list_namespaced_job, namespace,
                                    label_selector=selector)
            secrets = await self._call("list Secrets", cluster.call,
                                       cluster.core.list_namespaced_secret, namespace,
                                       label_selector=selector)
        except ApiException as exc:
            raise BackendError(f"kubernetes: cannot look for run {run_id} in namespace "
                               f"{namespace}: {api_message(exc)}.") from exc
        items = jobs.get("items") or []
        if not items:
            return None
        names = [s["metadata"]["name"] for s in secrets.get("items") or []]
        return self._handle(run_id, namespace, items[0]["metadata"]["name"], context, names,
                            spec.queue_config.get("image_pull_grace_s"))

    async def cleanup(self, handle: RunHandle) -> None:
        """Once the run's result and output are stored: delete its Secrets, and its Job
        if it is still going (an image that never pulled); a finished Job stays for
        its `ttlSecondsAfterFinished`, for `kubectl describe`."""
        from kubernetes.client.exceptions import ApiException

        cluster, namespace, job = await self._for_handle(handle)
        try:
            body = await self._call(f"read Job {job}", cluster.call,
                                    cluster.batch.read_namespaced_job, job, namespace)
        except ApiException as exc:
            if status_code(exc) != 404:
                raise BackendError(f"kubernetes: cannot read Job {job}: "
                                   f"{api_message(exc)}.") from exc
            body = None
        if body is not None and not job_status(body, [])[0].state.terminal:
            await self._delete_job(handle, 0)
        for name in handle.data.get("secrets") or []:
            try:
                await self._call(f"delete Secret {name}", cluster.call,
                                 cluster.core.delete_namespaced_secret, name, namespace)
            except ApiException as exc:
                if status_code(exc) != 404:
                    raise BackendError(f"kubernetes: cannot delete Secret {name} in "
                                       f"namespace {namespace}: {api_message(exc)}.") from exc


def _unreachable(exc: BaseException) -> str:
    """urllib3's "HTTPConnection(host=…, port=…): Failed to establish a new connection:
    [Errno 111] Connection refused" as "the API server 127.0.0.1:9 is unreachable
    (Connection refused)"."""
    reason = getattr(exc, "reason", None) or exc
    pool = getattr(reason, "conn", None) or getattr(reason, "pool", None)
    text = str(reason).strip().rstrip(".")
    why = text.rsplit("] ", 1)[-1] if "[Errno" in text else text.rsplit(": ", 1)[-1]
    if pool is not None and getattr(pool, "host", None):
        return f"the API server {pool.host}:{pool.port} is unreachable ({why})"
    return text
