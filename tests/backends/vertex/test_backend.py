"""The vertex backend through google-cloud-aiplatform's REST client against the
JobService stand-in on 127.0.0.1 (tests/gcp): submit, find, cancel, and what a
refusal or an unreachable endpoint looks like. The agent's side is in
tests/e2e/test_vertex_agent.py."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from launch_tui.backends.vertex_backend import VertexBackend
from launch_tui.core.backend import BackendContext, BuildResult, RunHandle
from launch_tui.core.errors import BackendError
from launch_tui.core.model import JobKind, RunSpec, RunState
from tests.gcp.jobservice import JobService, serve

IMAGE = "us-docker.pkg.dev/p/r/train:1"


@pytest.fixture
def vertex() -> Iterator[JobService]:
    with serve(JobService(cancel_after_s=None)) as service:
        yield service


def backend(tmp_path: Path, **settings: Any) -> VertexBackend:
    return VertexBackend(BackendContext(home=tmp_path, artifacts=tmp_path / "a",
                                        settings={"poll_max_s": 0.2, **settings}))


def spec(endpoint: str, run_id: str = "r0123456", **config: Any) -> RunSpec:
    return RunSpec(
        run_id=run_id, project="proj", queue="vq", resource="vertex", job="train", version=0,
        kind=JobKind.IMAGE, entrypoint=("python", "train.py"), config={},
        resource_args={"spec": {"staging_bucket": "gs://b"}}, env={"A": "1"},
        source={"image": IMAGE}, environment={}, job_digest="d",
        queue_config={"project": "proj-123", "location": "us-central1",
                      "api_endpoint": endpoint, **config},
    )


async def test_a_second_submit_of_a_run_adopts_its_job(tmp_path: Path,
                                                       vertex: JobService) -> None:
    b = backend(tmp_path)
    first = await b.submit(spec(vertex.endpoint), BuildResult(image=IMAGE))
    again = await backend(tmp_path).submit(spec(vertex.endpoint), BuildResult(image=IMAGE))
    assert first == again
    assert vertex.creates() == 1
    assert first.data == {"job": vertex.only_job().name, "project": "proj-123",
                          "location": "us-central1", "api_endpoint": vertex.endpoint}
    other = await b.submit(spec(vertex.endpoint, run_id="r9999999"), BuildResult(image=IMAGE))
    assert other.data["job"] != first.data["job"] and vertex.creates() == 2


async def test_find_looks_the_run_up_by_its_label(tmp_path: Path, vertex: JobService) -> None:
    b = backend(tmp_path)
    assert await b.find("r0123456", spec(vertex.endpoint)) is None
    handle = await b.submit(spec(vertex.endpoint))
    assert await b.find("r0123456", spec(vertex.endpoint)) == handle
    assert await b.find("r0123456", None) is None
    lists = [c for c in vertex.calls if c.method == "GET" and c.path.endswith("customJobs")]
    assert lists[-1].query["filter"] == ['labels.launch-tui-run-id="r0123456"']


async def test_status_watch_and_cancel_follow_the_job(tmp_path: Path,
                                                      vertex: JobService) -> None:
    b = backend(tmp_path)
    handle = await b.submit(spec(vertex.endpoint))
    assert (await b.status(handle)).state == RunState.STARTING
    vertex.set_state(handle.data["job"], "RUNNING")
    await b.cancel(handle, grace_s=5)
    assert (await b.status(handle)).state == RunState.STOPPING
    vertex.set_state(handle.data["job"], "CANCELLED", "CANCELED", code=1)
    states = [s.state async for s in b.watch(handle)]
    assert states == [RunState.STOPPED]
    await b.cancel(handle, grace_s=5)  # an ended job: nothing to stop, no error
    lines = [c.text async for c in b.logs(handle, follow=False)]
    assert lines[-1] == "[vertex] job ended: CANCELLED"


async def test_a_job_that_ran_before_the_first_look_is_reported_running_first(
        tmp_path: Path, vertex: JobService) -> None:
    b = backend(tmp_path)
    handle = await b.submit(spec(vertex.endpoint))
    vertex.set_state(handle.data["job"], "RUNNING")
    vertex.set_state(handle.data["job"], "SUCCEEDED")
    assert [s.state async for s in b.watch(handle)] == [RunState.RUNNING, RunState.FINISHED]


async def test_a_job_vertex_no_longer_has_is_crashed(tmp_path: Path,
                                                     vertex: JobService) -> None:
    b = backend(tmp_path)
    handle = await b.submit(spec(vertex.endpoint))
    vertex.jobs.clear()
    status = await b.status(handle)
    assert status.state == RunState.CRASHED
    assert "no custom job" in (status.reason or "")


async def test_a_refused_create_is_the_services_sentence(tmp_path: Path,
                                                         vertex: JobService) -> None:
    vertex.fail_next_create = (403, "PERMISSION_DENIED",
                               "Permission 'aiplatform.customJobs.create' denied.")
    with pytest.raises(BackendError) as err:
        await backend(tmp_path).submit(spec(vertex.endpoint))
    assert str(err.value) == (
        "vertex: cannot create a custom job in projects/proj-123/locations/us-central1: "
        "Permission 'aiplatform.customJobs.create' denied (HTTP 403).")


async def test_an_endpoint_that_does_not_answer_is_one_sentence(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens
    started = time.monotonic()
    with pytest.raises(BackendError) as err:
        await backend(tmp_path).submit(spec(f"http://127.0.0.1:{port}"))
    message = str(err.value)
    assert message.startswith(f"vertex: cannot look for run r0123456's custom job in "
                              f"projects/proj-123/locations/us-central1: http://127.0.0.1:{port}"
                              " did not answer"), message
    assert "\n" not in message
    assert time.monotonic() - started < 30


async def test_a_missing_credentials_file_is_one_sentence_before_any_call(
        tmp_path: Path) -> None:
    b = backend(tmp_path, credentials_file=str(tmp_path / "missing.json"))
    # An https endpoint is not a stand-in: the credentials are needed (and unreadable).
    with pytest.raises(BackendError) as err:
        await b.submit(spec("https://127.0.0.1:9"))
    assert str(err.value).startswith(
        f"vertex: cannot use credentials_file {tmp_path / 'missing.json'} "
        "([backends.vertex] in settings.toml): ")


def test_handles_survive_their_json_round_trip(tmp_path: Path) -> None:
    handle = RunHandle("vertex", "r1", {"job": "projects/p/locations/l/customJobs/1",
                                        "project": "p", "location": "l"})
    again = RunHandle.from_dict(handle.to_dict())
    assert backend(tmp_path)._target_of(again).parent == "projects/p/locations/l"
    assert backend(tmp_path).output_location(again) == (
        'Cloud Logging of project p: resource.type="ml_job" resource.labels.job_id="1"')
