"""Vertex AI job states as run states, from the library's own `JobState` members and
`CustomJob` messages (no server), and the run's log derived from the job."""

from __future__ import annotations

import datetime as dt

import pytest
from google.cloud.aiplatform_v1.types import CustomJob, JobState
from google.rpc import status_pb2

from launch_tui.backends import vertex_api as api
from launch_tui.core.model import RunState

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def job(state: JobState, message: str = "", started: bool = False) -> CustomJob:
    j = CustomJob(name="projects/p/locations/l/customJobs/42", display_name="train-r1",
                  state=state, create_time=T0, update_time=T0 + dt.timedelta(seconds=9))
    if started:
        j.start_time = T0 + dt.timedelta(seconds=5)
    if state in (JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED,
                 JobState.JOB_STATE_CANCELLED, JobState.JOB_STATE_EXPIRED,
                 JobState.JOB_STATE_PARTIALLY_SUCCEEDED):
        j.end_time = T0 + dt.timedelta(seconds=9)
    if message:
        j.error = status_pb2.Status(code=13, message=message)
    return j


@pytest.mark.parametrize(("state", "expected"), [
    (JobState.JOB_STATE_QUEUED, RunState.STARTING),
    (JobState.JOB_STATE_PENDING, RunState.STARTING),
    (JobState.JOB_STATE_RUNNING, RunState.RUNNING),
    (JobState.JOB_STATE_SUCCEEDED, RunState.FINISHED),
    (JobState.JOB_STATE_FAILED, RunState.FAILED),
    (JobState.JOB_STATE_EXPIRED, RunState.FAILED),
    (JobState.JOB_STATE_CANCELLING, RunState.STOPPING),
    (JobState.JOB_STATE_CANCELLED, RunState.STOPPED),
    (JobState.JOB_STATE_PARTIALLY_SUCCEEDED, RunState.FAILED),
    (JobState.JOB_STATE_UPDATING, RunState.RUNNING),
    (JobState.JOB_STATE_PAUSED, RunState.STARTING),
    (JobState.JOB_STATE_UNSPECIFIED, RunState.STARTING),
])
def test_each_job_state_member_maps_to_a_run_state(state: JobState, expected: RunState) -> None:
    assert api.status_of(job(state)).state == expected


def test_states_stringify_as_numbers_on_this_python_so_members_are_what_is_compared() -> None:
    # The trap the mapping avoids: str() of a proto-plus enum is its number here.
    assert str(JobState.JOB_STATE_RUNNING) in ("3", "JobState.JOB_STATE_RUNNING")
    # A job read back from JSON (as the REST client does) holds members too.
    back = CustomJob.from_json(CustomJob.to_json(job(JobState.JOB_STATE_RUNNING)))
    assert back.state == JobState.JOB_STATE_RUNNING
    assert api.status_of(back).state == RunState.RUNNING


def test_waiting_states_say_why_and_failures_carry_the_services_message() -> None:
    assert api.status_of(job(JobState.JOB_STATE_PENDING)).reason == (
        "Vertex AI: job pending (provisioning resources)")
    failed = api.status_of(job(JobState.JOB_STATE_FAILED, "replica exited with status 3"))
    assert failed.reason == "Vertex AI: job failed: replica exited with status 3"
    expired = api.status_of(job(JobState.JOB_STATE_EXPIRED, "deadline passed"))
    assert expired.reason == "Vertex AI: job expired: deadline passed"
    partial = api.status_of(job(JobState.JOB_STATE_PARTIALLY_SUCCEEDED))
    assert partial.state == RunState.FAILED and "partially succeeded" in (partial.reason or "")


def test_the_log_says_there_is_no_cloud_logging_and_grows_as_the_job_moves() -> None:
    seen: list[str] = []
    for j in (job(JobState.JOB_STATE_QUEUED), job(JobState.JOB_STATE_RUNNING, started=True),
              job(JobState.JOB_STATE_CANCELLING, started=True),
              job(JobState.JOB_STATE_CANCELLED, "CANCELED", started=True)):
        lines = [text for _, text in api.history(j)]
        assert lines[: len(seen)] == seen, "earlier lines are the same lines, in order"
        seen = lines
    assert seen[0].startswith("[vertex] Cloud Logging is not read by launch-tui")
    assert "job_id=42" in seen[0]
    assert seen[1:] == [
        "[vertex] custom job projects/p/locations/l/customJobs/42 (train-r1) created",
        "[vertex] job running",
        "[vertex] cancel requested: job cancelling",
        "[vertex] job ended: CANCELLED",
    ]
    failed = [text for _, text in api.history(job(JobState.JOB_STATE_FAILED, "boom"))]
    assert failed[-2:] == ["[vertex] job ended: FAILED", "[vertex] error: boom"]
