"""The Job controller and kubelet a real cluster would have, played by the harness.

There is no controller behind the stand-in API: this `Kubelet` watches it in-process
(on the server's loop) and, for every Job created in any namespace, creates its pods,
drives each pod through a *behaviour* (tests/kube/behaviours.py) chosen per Job by
`kubelet.behaviour(job_manifest)`, and keeps the Job's status as the Job controller
would (counts, startTime/completionTime, SuccessCriteriaMet/Complete,
FailureTarget/Failed with BackoffLimitExceeded, PodFailurePolicy or DeadlineExceeded).
Every change goes through the emulator, so watches see proper events.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.kube.apimachinery import ApiError, now_rfc3339
from tests.kube.emulator import BY_PLURAL, Event, StandInEmulator

if TYPE_CHECKING:
    from tests.kube.apiserver import KubeStandIn

PODS, JOBS, EVENTS = BY_PLURAL["pods"], BY_PLURAL["jobs"], BY_PLURAL["events"]
NODE = "standin-node"


class Behaviour:
    """What the kubelet does with one pod (tests/kube/behaviours.py has the set)."""

    async def run(self, ctx: PodCtx) -> None:
        raise NotImplementedError


class PodGone(Exception):
    """The pod was deleted under a behaviour; its coroutine ends."""


def condition(type_: str, status: str = "True", reason: str = "",
              message: str = "") -> dict[str, Any]:
    c = {"type": type_, "status": status, "lastProbeTime": None,
         "lastTransitionTime": now_rfc3339()}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def _set_condition(conds: list[dict[str, Any]], new: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in conds if c.get("type") != new["type"]] + [new]


def finished(job: dict[str, Any]) -> str | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return None


@dataclass
class PodCtx:
    """One pod as a behaviour sees it: the helpers write its status like a kubelet."""

    kubelet: Kubelet
    run: JobRun
    name: str
    uid: str
    spec: dict[str, Any]
    deleted: asyncio.Event = field(default_factory=asyncio.Event)
    terminated: bool = False

    @property
    def ns(self) -> str:
        return self.run.ns

    @property
    def emu(self) -> StandInEmulator:
        return self.kubelet.emu

    @property
    def job(self) -> dict[str, Any]:
        return self.run.manifest

    @property
    def container(self) -> dict[str, Any]:
        return self.spec["containers"][0]

    def pod(self) -> dict[str, Any]:
        pod = self.emu.find(PODS, self.ns, self.name)
        if pod is None or pod["metadata"]["uid"] != self.uid:
            raise PodGone(self.name)
        return pod

    async def sleep(self, seconds: float) -> None:
        """Sleep, or raise PodGone as soon as the pod is deleted."""
        try:
            await asyncio.wait_for(self.deleted.wait(), seconds)
        except TimeoutError:
            return
        raise PodGone(self.name)

    async def until_deleted(self) -> None:
        await self.deleted.wait()
        raise PodGone(self.name)

    def _status(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        pod = self.pod()
        status = copy.deepcopy(pod.get("status") or {})
        change(status)
        obj = dict(pod, status=status)
        obj["metadata"] = dict(obj["metadata"])
        obj["metadata"].pop("resourceVersion", None)
        new = self.emu.replace_object(PODS, self.ns, self.name, obj, status_only=True)
        self.kubelet.sync_job(self.run)
        return new

    def _container_status(self, state: dict[str, Any], ready: bool = False,
                          last: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        c = self.container
        return [{"name": c["name"], "image": c.get("image", ""), "imageID": "",
                 "containerID": f"docker://{self.uid}", "ready": ready, "restartCount": 0,
                 "started": "running" in state, "state": state, "lastState": last or {}}]

    # -- the steps a kubelet takes ------------------------------------------

    def unschedulable(self, message: str) -> None:
        self._status(lambda s: s.update(phase="Pending", conditions=[condition(
            "PodScheduled", "False", "Unschedulable", message)]))
        self.kubelet.event(self.ns, "Pod", self.name, self.uid, "Warning", "FailedScheduling",
                           message)

    def schedule(self) -> None:
        """Bind to the node: spec.nodeName, PodScheduled, the container creating."""
        pod = self.pod()
        if pod["spec"].get("nodeName"):
            return
        pod["spec"]["nodeName"] = NODE
        pod["metadata"].pop("resourceVersion", None)
        self.emu.replace_object(PODS, self.ns, self.name, pod)

        def change(s: dict[str, Any]) -> None:
            s.update(phase="Pending", hostIP="127.0.0.1", startTime=now_rfc3339(),
                     conditions=[condition("PodScheduled"),
                                 condition("Initialized"),
                                 condition("ContainersReady", "False", "ContainersNotReady"),
                                 condition("Ready", "False", "ContainersNotReady")],
                     containerStatuses=self._container_status(
                         {"waiting": {"reason": "ContainerCreating"}}))
        self._status(change)

    def waiting(self, reason: str, message: str = "") -> None:
        self.schedule()
        state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        self._status(lambda s: s.update(containerStatuses=self._container_status(state)))

    def running(self) -> None:
        self.schedule()

        def change(s: dict[str, Any]) -> None:
            conds = s.get("conditions") or []
            for c in ("ContainersReady", "Ready"):
                conds = _set_condition(conds, condition(c))
            s.update(phase="Running", conditions=conds, podIP="127.0.0.1",
                     containerStatuses=self._container_status(
                         {"running": {"startedAt": now_rfc3339()}}, ready=True))
        self._status(change)

    def log(self, line: str, ts_ns: int | None = None) -> None:
        self.pod()
        self.emu.logs.append(self.ns, self.name, self.container["name"], line, ts_ns)
        self.emu.poke()

    def terminate(self, exit_code: int, reason: str = "", message: str = "",
                  conditions: list[dict[str, Any]] | None = None) -> None:
        """The container ended: phase Succeeded (exit 0) or Failed, state.terminated."""
        self.schedule()
        reason = reason or ("Completed" if exit_code == 0 else "Error")

        def change(s: dict[str, Any]) -> None:
            started = ((s.get("containerStatuses") or [{}])[0].get("state") or {}).get(
                "running", {}).get("startedAt") or now_rfc3339()
            term = {"exitCode": exit_code, "reason": reason, "startedAt": started,
                    "finishedAt": now_rfc3339(), "containerID": f"docker://{self.uid}"}
            if message:
                term["message"] = message
            conds = s.get("conditions") or []
            why = "PodCompleted" if exit_code == 0 else "PodFailed"
            for c in ("ContainersReady", "Ready"):
                conds = _set_condition(conds, condition(c, "False", why))
            for extra in conditions or []:
                conds = _set_condition(conds, extra)
            s.update(phase="Succeeded" if exit_code == 0 else "Failed", conditions=conds,
                     containerStatuses=self._container_status({"terminated": term}))
        self.terminated = True
        self._status(change)
        self.kubelet.pod_ended(self)


@dataclass
class JobRun:
    ns: str
    name: str
    uid: str
    manifest: dict[str, Any]
    behaviour: Behaviour
    pods: dict[str, PodCtx] = field(default_factory=dict)
    succeeded: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class Kubelet:
    """`kubelet.behaviour = lambda job: Succeed(lines=["hi"])` before creating Jobs."""

    def __init__(self, server: KubeStandIn,
                 behaviour: Callable[[dict[str, Any]], Behaviour] | None = None) -> None:
        from tests.kube.behaviours import RunInDocker

        self.server = server
        self.emu = server.emulator
        self.behaviour: Callable[[dict[str, Any]], Behaviour] = behaviour or (
            lambda job: RunInDocker())
        self.jobs: dict[str, JobRun] = {}  # by uid
        self.containers: set[str] = set()  # docker containers running now (RunInDocker)
        self._queue: asyncio.Queue[Event] | None = None
        self._consumer: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Kubelet:
        def setup() -> None:
            self._queue = asyncio.Queue()
            self._consumer = asyncio.get_running_loop().create_task(self._consume())
            self.emu.listeners.append(self._queue.put_nowait)
        self.server.call(setup)
        return self

    def stop(self) -> None:
        """Cancel every pod's behaviour and kill its container, if any."""
        from tests.kube.dockerrun import kill_all

        kill_all(self.containers)

        def teardown() -> list[asyncio.Task[None]]:
            if self._queue is not None and self._queue.put_nowait in self.emu.listeners:
                self.emu.listeners.remove(self._queue.put_nowait)
            tasks = [t for run in self.jobs.values() for t in run.tasks]
            if self._consumer is not None:
                tasks.append(self._consumer)
            for t in tasks:
                t.cancel()
            return tasks
        if self.server._loop is not None:
            self.server.call(teardown)

    # -------------------------------------------------------------- events

    async def _consume(self) -> None:
        assert self._queue is not None
        while True:
            ev = await self._queue.get()
            try:
                self._on_event(ev)
            except Exception:  # keep the kubelet alive; a test sees the missing status
                import traceback
                traceback.print_exc()

    def _on_event(self, ev: Event) -> None:
        meta = ev.obj.get("metadata") or {}
        if ev.kind is JOBS and ev.type == "ADDED" and meta["uid"] not in self.jobs:
            run = JobRun(meta["namespace"], meta["name"], meta["uid"], ev.obj,
                         self.behaviour(copy.deepcopy(ev.obj)))
            self.jobs[run.uid] = run
            self._start_job(run)
        elif ev.kind is PODS and ev.type == "DELETED":
            for run in self.jobs.values():
                ctx = run.pods.get(meta.get("name", ""))
                if ctx is not None and ctx.uid == meta.get("uid"):
                    ctx.deleted.set()
                    if not ctx.terminated:  # a pod deleted while it ran counts as failed
                        ctx.terminated = True
                        self.pod_ended(ctx, deleted=True)

    # ---------------------------------------------------------- controller

    def event(self, ns: str, kind: str, name: str, uid: str, type_: str, reason: str,
              message: str) -> None:
        """A core/v1 Event about an object, as controllers and kubelets record them."""
        self.emu.create_object(EVENTS, ns, {
            "metadata": {"generateName": f"{name}."},
            "involvedObject": {"kind": kind, "namespace": ns, "name": name, "uid": uid},
            "type": type_, "reason": reason, "message": message, "count": 1,
            "firstTimestamp": now_rfc3339(), "lastTimestamp": now_rfc3339(),
            "source": {"component": "job-controller" if kind == "Job" else "kubelet"}})

    def _job(self, run: JobRun) -> dict[str, Any] | None:
        job = self.emu.find(JOBS, run.ns, run.name)
        return job if job is not None and job["metadata"]["uid"] == run.uid else None

    def _start_job(self, run: JobRun) -> None:
        self._put_job_status(run, {"startTime": now_rfc3339()})
        if (run.manifest.get("spec") or {}).get("suspend"):
            return
        for _ in range(int(run.manifest["spec"].get("parallelism") or 1)):
            self.create_pod(run)

    def create_pod(self, run: JobRun) -> PodCtx:
        tmpl = copy.deepcopy(run.manifest["spec"].get("template") or {})
        tmeta = tmpl.get("metadata") or {}
        pod = self.emu.create_object(PODS, run.ns, {
            "metadata": {
                "generateName": f"{run.name}-",
                "labels": dict(tmeta.get("labels") or {}),
                "annotations": dict(tmeta.get("annotations") or {}),
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": run.name,
                                     "uid": run.uid, "controller": True,
                                     "blockOwnerDeletion": True}]},
            "spec": tmpl.get("spec") or {}})
        ctx = PodCtx(self, run, pod["metadata"]["name"], pod["metadata"]["uid"], pod["spec"])
        run.pods[ctx.name] = ctx
        self.event(run.ns, "Job", run.name, run.uid, "Normal", "SuccessfulCreate",
                   f"Created pod: {ctx.name}")
        task = asyncio.get_running_loop().create_task(self._drive(ctx))
        run.tasks.add(task)
        task.add_done_callback(run.tasks.discard)
        self.sync_job(run)
        return ctx

    async def _drive(self, ctx: PodCtx) -> None:
        try:
            await ctx.run.behaviour.run(ctx)
        except (PodGone, ApiError):
            pass

    def pod_ended(self, ctx: PodCtx, deleted: bool = False) -> None:
        """Count a pod that ended; fail, complete or replace as the controller would."""
        run = ctx.run
        job = self._job(run)
        if job is None or finished(job) or (job["metadata"].get("deletionTimestamp")):
            return
        pod = None if deleted else self.emu.find(PODS, run.ns, ctx.name)
        if pod is not None and pod["status"].get("phase") == "Succeeded":
            run.succeeded.add(ctx.uid)
        else:
            action, message = ("Count", "") if pod is None else failure_policy(job, pod)
            if action == "FailJob":
                self.fail_job(run, "PodFailurePolicy", message)
                return
            if action != "Ignore":
                run.failed.add(ctx.uid)
            if len(run.failed) > int(job["spec"].get("backoffLimit", 6)):
                self.fail_job(run, "BackoffLimitExceeded",
                              "Job has reached the specified backoff limit")
                return
        completions = int(job["spec"].get("completions") or 1)
        if len(run.succeeded) >= completions:
            self.complete_job(run)
            return
        live = [c for c in run.pods.values() if not c.terminated]
        want = min(int(job["spec"].get("parallelism") or 1), completions - len(run.succeeded))
        for _ in range(want - len(live)):
            self.create_pod(run)
        self.sync_job(run)

    def _counts(self, run: JobRun) -> dict[str, Any]:
        live = [c for c in run.pods.values() if not c.terminated and not c.deleted.is_set()]
        ready = 0
        for c in live:
            pod = self.emu.find(PODS, run.ns, c.name)
            if pod and any(x.get("type") == "Ready" and x.get("status") == "True"
                           for x in pod["status"].get("conditions") or []):
                ready += 1
        counts: dict[str, Any] = {"active": len(live), "succeeded": len(run.succeeded),
                                  "failed": len(run.failed)}
        counts = {k: v for k, v in counts.items() if v}  # the API omits zero counts
        return {**counts, "ready": ready}

    def sync_job(self, run: JobRun) -> None:
        job = self._job(run)
        if job is not None and not finished(job):
            self._put_job_status(run, {})

    def _put_job_status(self, run: JobRun, extra: dict[str, Any],
                        conditions: Sequence[dict[str, Any]] = ()) -> None:
        job = self._job(run)
        if job is None:
            return
        status = {k: v for k, v in (job.get("status") or {}).items()
                  if k not in ("active", "succeeded", "failed", "ready")}
        status.update(self._counts(run), **extra)
        conds = status.get("conditions") or []
        for c in conditions:
            conds = _set_condition(conds, c)
        if conds:
            status["conditions"] = conds
        if status == job.get("status"):
            return
        job["status"] = status
        job["metadata"].pop("resourceVersion", None)
        self.emu.replace_object(JOBS, run.ns, run.name, job, status_only=True)

    def complete_job(self, run: JobRun) -> None:
        message = "Reached expected number of succeeded pods"
        self._put_job_status(run, {}, [condition("SuccessCriteriaMet", reason="CompletionsReached",
                                                 message=message)])
        self._put_job_status(run, {"completionTime": now_rfc3339()},
                             [condition("Complete", reason="CompletionsReached",
                                        message=message)])
        self.event(run.ns, "Job", run.name, run.uid, "Normal", "Completed", "Job completed")

    def fail_job(self, run: JobRun, reason: str, message: str) -> None:
        """FailureTarget, then the remaining pods deleted (counted failed), then Failed."""
        if self._job(run) is None:
            return
        self._put_job_status(run, {}, [condition("FailureTarget", reason=reason,
                                                 message=message)])
        for ctx in list(run.pods.values()):
            if not ctx.terminated and not ctx.deleted.is_set():
                ctx.terminated = True
                run.failed.add(ctx.uid)
                if self.emu.find(PODS, run.ns, ctx.name) is not None:
                    self.emu.delete_object(PODS, run.ns, ctx.name)
                ctx.deleted.set()
        self._put_job_status(run, {}, [condition("Failed", reason=reason, message=message)])
        self.event(run.ns, "Job", run.name, run.uid, "Warning", reason, message)

    # ------------------------------------------------------------ for tests

    def expire_finished(self) -> list[str]:
        """Delete every finished Job that has ttlSecondsAfterFinished, with its pods, as
        the TTL controller would once the time is up (tests call this; no timer)."""
        def expire() -> list[str]:
            gone = []
            for ns_job in self.emu.list_objects(JOBS, None):
                if finished(ns_job) and ns_job["spec"].get("ttlSecondsAfterFinished") is not None:
                    meta = ns_job["metadata"]
                    self.emu.delete_object(JOBS, meta["namespace"], meta["name"], "Foreground")
                    gone.append(meta["name"])
            return gone
        return self.server.call(expire)


def failure_policy(job: dict[str, Any], pod: dict[str, Any]) -> tuple[str, str]:
    """The action of the first podFailurePolicy rule the failed pod matches."""
    ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    rules = ((job.get("spec") or {}).get("podFailurePolicy") or {}).get("rules") or []
    for i, rule in enumerate(rules):
        action = rule.get("action", "Count")
        for want in rule.get("onPodConditions") or []:
            for c in pod["status"].get("conditions") or []:
                if c.get("type") == want.get("type") and c.get("status") == want.get(
                        "status", "True"):
                    return action, (f"Pod {ns}/{name} has condition {c['type']} matching "
                                    f"{action} rule at index {i}")
        codes = rule.get("onExitCodes")
        if codes:
            for cs in pod["status"].get("containerStatuses") or []:
                term = (cs.get("state") or {}).get("terminated") or {}
                code = term.get("exitCode")
                if code in (None, 0) or codes.get("containerName") not in (None, cs["name"]):
                    continue
                hit = code in codes.get("values", [])
                if hit == (codes.get("operator", "In") == "In"):
                    return action, (f"Container {cs['name']} for pod {ns}/{name} failed with "
                                    f"exit code {code} matching {action} rule at index {i}")
    return "Count", ""
