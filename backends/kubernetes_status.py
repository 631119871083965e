"""A run's state from its Job and pods, as the cluster reports them.

Pure: the backend feeds it the objects its watch last saw. The mapping:

    no pods yet, pods Pending          starting ("waiting for a pod", the kubelet's reason)
    PodScheduled=False Unschedulable   starting, with the scheduler's message as the reason
    ErrImagePull / ImagePullBackOff    starting, then failed once it lasted the queue's
                                       `image_pull_grace_s`, naming the image
    a container Running                running
    Job condition Complete             finished
    Job condition Failed               failed with the container's exit code and reason;
                                       OOMKilled → out of memory; DeadlineExceeded → timed
                                       out; a pod with DisruptionTarget → preempted
    Job deleted before it ended        stopped
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from launch_tui.core.backend import RunStatus
from launch_tui.core.model import RunState

PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
DEFAULT_PULL_GRACE_S = 300.0


@dataclass
class PullClock:
    """When this agent first saw each pod's image failing to pull (the API records no
    time for a waiting state); a restarted agent starts the grace period over."""

    since: dict[str, float] = field(default_factory=dict)

    def first_seen(self, pod: str, now: float) -> float:
        return self.since.setdefault(pod, now)

    def forget_except(self, pods: Iterable[str]) -> None:
        keep = set(pods)
        for name in list(self.since):
            if name not in keep:
                del self.since[name]


def _conditions(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [c for c in (obj.get("status") or {}).get("conditions") or [] if isinstance(c, dict)]


def _true(obj: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in _conditions(obj) if c.get("type") == kind
                 and c.get("status") == "True"), None)


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "?")


def _containers(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    return [c for c in (status.get("initContainerStatuses") or [])
            + (status.get("containerStatuses") or []) if isinstance(c, dict)]


def _clip(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def job_status(job: Mapping[str, Any] | None, pods: Iterable[Mapping[str, Any]], *,
               deleted: bool = False, now: float = 0.0, clock: PullClock | None = None,
               pull_grace_s: float = DEFAULT_PULL_GRACE_S) -> tuple[RunStatus, float | None]:
    """(the run's status, when it must be looked at again without news, if ever)."""
    pods = sorted(pods, key=_name)
    if job is not None:
        ended = _ended(job, pods)
        if ended is not None:
            return ended, None
    if job is None or deleted:
        return RunStatus(RunState.STOPPED,
                         reason="its Kubernetes Job was deleted before it ended"), None
    return _progress(job, pods, now, clock or PullClock(), pull_grace_s)


def _ended(job: Mapping[str, Any], pods: list[Mapping[str, Any]]) -> RunStatus | None:
    if _true(job, "Complete"):
        return RunStatus(RunState.FINISHED, exit_code=0)
    failed = _true(job, "Failed") or _true(job, "FailureTarget")
    if failed is None:
        return None
    reason = str(failed.get("reason") or "")
    if reason == "DeadlineExceeded":
        limit = (job.get("spec") or {}).get("activeDeadlineSeconds")
        return RunStatus(RunState.FAILED, reason=(
            f"timed out: the Job ran past its deadline of {limit} s" if limit
            else "timed out: the Job ran past its deadline"))
    for pod in pods:
        disruption = _true(pod, "DisruptionTarget")
        if disruption is not None:
            why = disruption.get("reason") or "DisruptionTarget"
            message = disruption.get("message") or ""
            return RunStatus(RunState.PREEMPTED, reason=_clip(
                f"pod {_name(pod)} was evicted or preempted ({why})"
                + (f": {message}" if message else "")))
    for pod in pods:
        for c in _containers(pod):
            term = (c.get("state") or {}).get("terminated") or {}
            if term.get("reason") == "OOMKilled":
                limit = _memory_limit(pod, c.get("name"))
                return RunStatus(RunState.FAILED, exit_code=int(term.get("exitCode", 137)),
                                 reason=f"out of memory: container {c.get('name')} of pod "
                                        f"{_name(pod)} was killed by the kernel"
                                        + (f" (memory limit {limit})" if limit else ""))
    for pod in pods:
        for c in _containers(pod):
            term = (c.get("state") or {}).get("terminated") or {}
            code = term.get("exitCode")
            if code not in (None, 0):
                detail = term.get("reason") or "Error"
                message = term.get("message") or ""
                return RunStatus(RunState.FAILED, exit_code=int(code), reason=_clip(
                    f"exit code {code} ({detail}) in pod {_name(pod)}"
                    + (f": {message}" if message else "")))
    message = failed.get("message") or ""
    return RunStatus(RunState.FAILED, reason=_clip(
        f"the Job failed ({reason or 'Failed'})" + (f": {message}" if message else "")))


def _memory_limit(pod: Mapping[str, Any], container: Any) -> str | None:
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c.get("name") == container:
            return ((c.get("resources") or {}).get("limits") or {}).get("memory")
    return None


def _progress(job: Mapping[str, Any], pods: list[Mapping[str, Any]], now: float,
              clock: PullClock, grace: float) -> tuple[RunStatus, float | None]:
    clock.forget_except(_name(p) for p in pods if _pull_failure(p))
    for pod in pods:
        if any("running" in (c.get("state") or {}) for c in _containers(pod)):
            return RunStatus(RunState.RUNNING), None
    if any((p.get("status") or {}).get("phase") == "Succeeded" for p in pods):
        return RunStatus(RunState.RUNNING), None  # one pod done, others still to come
    due: float | None = None
    waiting: list[str] = []
    for pod in pods:
        pulling = _pull_failure(pod)
        if pulling is not None:
            image, why, message = pulling
            since = clock.first_seen(_name(pod), now)
            text = f"cannot pull image {image}: {why}" + (f": {message}" if message else "")
            if why == "InvalidImageName" or now - since >= grace:
                return RunStatus(RunState.FAILED, reason=_clip(
                    f"image: {text} (gave up after {now - since:.0f} s)"
                    if why != "InvalidImageName" else f"image: {text}")), None
            due = since + grace if due is None else min(due, since + grace)
            waiting.append(text)
            continue
        unschedulable = next((c for c in _conditions(pod) if c.get("type") == "PodScheduled"
                              and c.get("status") == "False"), None)
        if unschedulable is not None:
            waiting.append(f"{unschedulable.get('reason') or 'Unschedulable'}: "
                           f"{unschedulable.get('message') or 'no node fits the pod'}")
            continue
        for c in _containers(pod):
            w = (c.get("state") or {}).get("waiting") or {}
            if w.get("reason") and w.get("reason") != "ContainerCreating":
                waiting.append(f"{w['reason']}" + (f": {w['message']}" if w.get("message")
                                                   else ""))
                break
        if _true(pod, "DisruptionTarget"):
            waiting.append(f"pod {_name(pod)} was evicted or preempted; the Job may start "
                           "another")
    if waiting:
        return RunStatus(RunState.STARTING, reason=_clip(waiting[0])), due
    if not pods:
        return RunStatus(RunState.STARTING, reason="waiting for the Job's pod"), None
    return RunStatus(RunState.STARTING, reason="pod pending: creating its container"), None


def _pull_failure(pod: Mapping[str, Any]) -> tuple[str, str, str] | None:
    for c in _containers(pod):
        w = (c.get("state") or {}).get("waiting") or {}
        if w.get("reason") in PULL_FAILURES:
            return str(c.get("image") or _spec_image(pod, c.get("name"))), str(w["reason"]), \
                str(w.get("message") or "")
    return None


def _spec_image(pod: Mapping[str, Any], container: Any) -> str:
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c.get("name") == container:
            return str(c.get("image") or "?")
    return "?"
