"""How a Job's and its pods' state becomes a run's state (kubernetes_status).

Pure function tests over objects shaped as the API server returns them; the same
states are produced by the test kubelet through the real client in
test_kubernetes_agent.py.
"""

from __future__ import annotations

from typing import Any

from launch_tui.backends.kubernetes_status import PullClock, job_status
from launch_tui.core.model import RunState

JOB: dict[str, Any] = {"metadata": {"name": "lt-train-r1"}, "spec": {}, "status": {}}


def pod(name: str = "lt-train-r1-abcde", *, phase: str = "Pending",
        state: dict[str, Any] | None = None, conditions: list[dict[str, Any]] | None = None,
        memory: str | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "job", "image": "reg/x:1"}
    if memory:
        container["resources"] = {"limits": {"memory": memory}}
    statuses = [{"name": "job", "image": "reg/x:1", "state": state}] if state else []
    return {"metadata": {"name": name}, "spec": {"containers": [container]},
            "status": {"phase": phase, "containerStatuses": statuses,
                       "conditions": conditions or []}}


def job(*conditions: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {**JOB, "spec": spec, "status": {"conditions": list(conditions)}}


def cond(kind: str, reason: str = "", message: str = "", status: str = "True") -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def test_waiting_states_say_why() -> None:
    assert job_status(JOB, [])[0].reason == "waiting for the Job's pod"
    status, _ = job_status(JOB, [pod(conditions=[cond(
        "PodScheduled", "Unschedulable", "0/3 nodes are available: 3 Insufficient "
        "nvidia.com/gpu.", status="False")])])
    assert status.state == RunState.STARTING
    assert status.reason == ("Unschedulable: 0/3 nodes are available: 3 Insufficient "
                             "nvidia.com/gpu.")
    running = pod(phase="Running", state={"running": {"startedAt": "2026-11-23T10:00:00Z"}})
    assert job_status(JOB, [running])[0].state == RunState.RUNNING


def test_image_pull_failure_waits_for_the_grace_then_fails_naming_the_image() -> None:
    clock = PullClock()
    backoff = pod(state={"waiting": {"reason": "ImagePullBackOff",
                                     "message": 'Back-off pulling image "reg/x:1"'}})
    status, due = job_status(JOB, [backoff], now=100.0, clock=clock, pull_grace_s=30)
    assert status.state == RunState.STARTING and due == 130.0
    assert "cannot pull image reg/x:1: ImagePullBackOff" in str(status.reason)
    status, due = job_status(JOB, [backoff], now=131.0, clock=clock, pull_grace_s=30)
    assert status.state == RunState.FAILED and due is None
    assert status.reason == ('image: cannot pull image reg/x:1: ImagePullBackOff: Back-off '
                             'pulling image "reg/x:1" (gave up after 31 s)')


def test_terminal_states() -> None:
    assert job_status(job(cond("Complete")), [])[0].state == RunState.FINISHED
    oom = pod(phase="Failed", memory="64Mi",
              state={"terminated": {"exitCode": 137, "reason": "OOMKilled"}})
    status, _ = job_status(job(cond("Failed", "BackoffLimitExceeded")), [oom])
    assert (status.state, status.exit_code) == (RunState.FAILED, 137)
    assert status.reason == ("out of memory: container job of pod lt-train-r1-abcde was "
                             "killed by the kernel (memory limit 64Mi)")
    status, _ = job_status(job(cond("Failed", "DeadlineExceeded"), activeDeadlineSeconds=60), [])
    assert status.reason == "timed out: the Job ran past its deadline of 60 s"
    preempted = pod(phase="Failed", state={"terminated": {"exitCode": 143}},
                    conditions=[cond("DisruptionTarget", "PreemptionByScheduler",
                                     "Preempted in order to admit critical pod")])
    status, _ = job_status(job(cond("Failed", "PodFailurePolicy")), [preempted])
    assert status.state == RunState.PREEMPTED
    assert "(PreemptionByScheduler): Preempted in order to admit critical pod" in str(
        status.reason)
    failed = pod(phase="Failed", state={"terminated": {"exitCode": 3, "reason": "Error"}})
    status, _ = job_status(job(cond("Failed", "BackoffLimitExceeded")), [failed])
    assert (status.state, status.exit_code) == (RunState.FAILED, 3)
    assert status.reason == "exit code 3 (Error) in pod lt-train-r1-abcde"


def test_a_job_deleted_before_it_ended_is_stopped_one_that_completed_is_finished() -> None:
    assert job_status(JOB, [], deleted=True)[0].state == RunState.STOPPED
    assert job_status(job(cond("Complete")), [], deleted=True)[0].state == RunState.FINISHED
