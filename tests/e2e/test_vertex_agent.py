"""The real agent on a vertex queue, end to end, against the JobService stand-in.

`launch-tui agent` runs in its own process and talks to `tests/gcp/jobservice.py`
on 127.0.0.1 through google-cloud-aiplatform's own REST client (anonymous
credentials, the queue's `api_endpoint`: nothing leaves the machine). The test
plays Vertex's controller: it moves each custom job's state with the stand-in's
hooks. What is asserted is what a user sees (run states, reasons, the run's log)
and what Vertex was sent (the created job's image, command, environment, labels).

The code-job test builds on the private Docker daemon and pushes to the loopback
registry of `scripts/test-services.sh start` (LAUNCH_TUI_TEST_REGISTRY), standing
in for the queue's Artifact Registry repository.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from launch_tui.core.model import ErrorStage, LogStream, RunState
from tests.agent_harness import Lab, wait_for
from tests.gcp.jobservice import JobService, serve

PROJECT = "launch-test-proj"
LOCATION = "us-central1"
BUCKET = "gs://launch-test-bucket"
IMAGE = "us-docker.pkg.dev/launch-test-proj/jobs/trainer:1"
REGISTRY = os.environ.get("LAUNCH_TUI_TEST_REGISTRY", "127.0.0.1:55000")


@pytest.fixture
def vertex() -> Iterator[JobService]:
    with serve(JobService(cancel_after_s=0.3)) as service:
        yield service


def queue_config(service: JobService, **over: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "project": PROJECT, "location": LOCATION, "api_endpoint": service.endpoint,
        "resource_args": {
            "spec": {"staging_bucket": BUCKET,
                     "worker_pool_specs": [{"machine_spec": {"machine_type": "n1-standard-8"},
                                            "replica_count": 1}]},
            "run": {"timeout": 600, "restart_job_on_worker_restart": False},
        },
    }
    config.update(over)
    return {k: v for k, v in config.items() if v is not None}


def fast_polls(lab: Lab) -> None:
    """The agent's settings: polls fast, so each state the test sets is seen within a
    fraction of a second."""
    lab.home.mkdir(parents=True, exist_ok=True)
    (lab.home / "settings.toml").write_text("[backends.vertex]\npoll_max_s = 0.3\n")


async def setup(lab: Lab, service: JobService, **over: Any) -> None:
    fast_polls(lab)
    await lab.service.create_queue("vq", "vertex", queue_config(service, **over))
    await lab.service.create_image_job(IMAGE, entrypoint="python train.py --epochs 1",
                                       name="trainer", config_defaults={"lr": 0.1})


async def job_of(service: JobService, within: float = 30.0) -> Any:
    return await wait_for(lambda: service.created()[0] if service.created() else None,
                          "the agent to create a custom job", within)


async def run_log(lab: Lab, run_id: str) -> list[str]:
    lines = await lab.service.run_logs(run_id, limit=10_000)
    return [f"{line.stream}: {line.text}" for line in lines]


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def env_of(job: Any, pool: int = 0) -> dict[str, str]:
    return {e.name: e.value for e in job.job_spec.worker_pool_specs[pool].container_spec.env}


# ---------------------------------------------------------------------- tests


async def test_image_job_finishes_with_its_config_override_in_the_jobs_env(
        lab: Lab, vertex: JobService) -> None:
    await setup(lab, vertex)
    agent = lab.spawn_agent(["vq"], "va")
    item = await lab.service.enqueue("trainer", "vq", config={"lr": 0.5})
    run = await lab.run_of(item.id, within=30)
    job = await job_of(vertex)

    pool = job.job_spec.worker_pool_specs[0]
    assert pool.container_spec.image_uri == IMAGE
    assert list(pool.container_spec.command) == ["python", "train.py", "--epochs", "1"]
    assert pool.machine_spec.machine_type == "n1-standard-8"
    env = env_of(job)
    assert json.loads(env["WANDB_CONFIG"]) == {"lr": 0.5}
    assert env["LAUNCH_TUI_RUN_ID"] == run.id
    assert job.labels["launch-tui-run-id"] == run.id
    assert job.display_name == f"trainer-{run.id}"
    output = job.job_spec.base_output_directory.output_uri_prefix
    assert output == f"{BUCKET}/launch-tui/{run.id}"
    assert job.job_spec.scheduling.timeout.total_seconds() == 600
    assert job.name.startswith(f"projects/{PROJECT}/locations/{LOCATION}/customJobs/")

    starting = await lab.wait_run(run.id, [RunState.STARTING])
    vertex.set_state(job.name, "PENDING")
    await wait_for(_reason(lab, run.id, "provisioning"), "the run to say it waits", 15)
    vertex.set_state(job.name, "RUNNING")
    await lab.wait_run(run.id, [RunState.RUNNING], within=15)
    vertex.set_state(job.name, "SUCCEEDED")
    done = await lab.wait_run(run.id, within=15)
    assert done.state == RunState.FINISHED, (done.reason, agent.output())
    assert done.handle is not None and done.handle["data"]["job"] == job.name
    assert starting.state == RunState.STARTING

    log = [line for line in await run_log(lab, run.id) if line.startswith("agent: ")]
    assert log[0].startswith(f"{LogStream.AGENT}: [vertex] Cloud Logging is not read"), log
    assert any("job running" in line for line in log), log
    assert any("job ended: SUCCEEDED" in line for line in log), log
    assert vertex.creates() == 1


def _reason(lab: Lab, run_id: str, text: str) -> Any:
    async def check() -> bool:
        run = await lab.service.get_run(run_id)
        return text in (run.reason or "")
    return check


async def test_a_failed_job_shows_the_services_error_message(
        lab: Lab, vertex: JobService) -> None:
    await setup(lab, vertex)
    lab.spawn_agent(["vq"], "va")
    item = await lab.service.enqueue("trainer", "vq")
    run = await lab.run_of(item.id, within=30)
    job = await job_of(vertex)
    vertex.set_state(job.name, "RUNNING")
    await lab.wait_run(run.id, [RunState.RUNNING], within=15)
    message = "The replica workerpool0-0 exited with a non-zero status of 3."
    vertex.fail(job.name, message)
    done = await lab.wait_run(run.id, within=15)
    assert done.state == RunState.FAILED
    assert done.error_stage == ErrorStage.RUN
    assert done.reason == f"Vertex AI: job failed: {message}"
    assert message in (done.error_message or "")
    log = await run_log(lab, run.id)
    assert f"{LogStream.AGENT}: [vertex] error: {message}" in log, log


async def test_partially_succeeded_is_a_failure_with_a_reason(
        lab: Lab, vertex: JobService) -> None:
    await setup(lab, vertex)
    lab.spawn_agent(["vq"], "va")
    item = await lab.service.enqueue("trainer", "vq")
    run = await lab.run_of(item.id, within=30)
    job = await job_of(vertex)
    vertex.set_state(job.name, "PARTIALLY_SUCCEEDED")
    done = await lab.wait_run(run.id, within=15)
    assert done.state == RunState.FAILED
    assert "partially succeeded" in (done.reason or "")


async def test_cancel_cancels_the_custom_job_and_the_run_ends_stopped(
        lab: Lab, vertex: JobService) -> None:
    await setup(lab, vertex)
    lab.spawn_agent(["vq"], "va")
    item = await lab.service.enqueue("trainer", "vq")
    run = await lab.run_of(item.id, within=30)
    job = await job_of(vertex)
    vertex.set_state(job.name, "RUNNING")
    await lab.wait_run(run.id, [RunState.RUNNING], within=15)
    result = await lab.cli("cancel", run.id)
    assert result.returncode == 0, result.stderr
    done = await lab.wait_run(run.id, within=15)
    assert done.state == RunState.STOPPED, done.reason
    assert any(c.path == f"/v1/{job.name}:cancel" for c in vertex.calls)
    assert vertex.only_job().state.name == "JOB_STATE_CANCELLED"
    log = await run_log(lab, run.id)
    assert any("cancel requested" in line for line in log), log
    assert any("job ended: CANCELLED" in line for line in log), log


async def test_a_restarted_agent_reattaches_to_the_running_job(
        lab: Lab, vertex: JobService) -> None:
    await setup(lab, vertex)
    first = lab.spawn_agent(["vq"], "va")
    item = await lab.service.enqueue("trainer", "vq")
    run = await lab.run_of(item.id, within=30)
    job = await job_of(vertex)
    vertex.set_state(job.name, "RUNNING")
    await lab.wait_run(run.id, [RunState.RUNNING], within=15)
    await lab.wait_output_lines(run.id, 3) if hasattr(lab, "wait_output_lines") else None
    await first.kill()

    second = lab.spawn_agent(["vq"], "va")
    await wait_for(lambda: "re-attached" in second.output() or _agent_said(lab, "re-attached"),
                   "the agent to re-attach", 30)
    vertex.set_state(job.name, "SUCCEEDED")
    done = await lab.wait_run(run.id, within=20)
    assert done.state == RunState.FINISHED, done.reason
    assert vertex.creates() == 1
    log = await run_log(lab, run.id)
    # The history is read again from the job after the restart; no line twice.
    assert sum("job running" in line for line in log) == 1, log
    assert sum("Cloud Logging is not read" in line for line in log) == 1, log


async def _agent_said(lab: Lab, text: str) -> bool:
    return any(text in entry.message for entry in await lab.service.agent_logs("va"))


async def test_submit_is_idempotent_when_the_agent_died_while_creating(
        lab: Lab, vertex: JobService) -> None:
    """The agent dies after Vertex made the job but before it heard back: the next
    agent finds the job by the run's label instead of creating a second one."""
    await setup(lab, vertex)
    vertex.create_delay_s = 30.0
    first = lab.spawn_agent(["vq"], "va")
    item = await lab.service.enqueue("trainer", "vq")
    run = await lab.run_of(item.id, within=30)
    job = await job_of(vertex)
    await first.kill()
    assert (await lab.service.get_run(run.id)).handle is None
    vertex.create_delay_s = 0.0

    lab.spawn_agent(["vq"], "va")
    vertex.set_state(job.name, "RUNNING")
    await lab.wait_run(run.id, [RunState.RUNNING], within=30)
    vertex.set_state(job.name, "SUCCEEDED")
    done = await lab.wait_run(run.id, within=15)
    assert done.state == RunState.FINISHED, done.reason
    assert vertex.creates() == 1
    assert await _agent_said(lab, f"re-attached to run {run.id}")


async def test_a_missing_project_or_bucket_fails_the_run_at_starting_in_one_sentence(
        lab: Lab, vertex: JobService) -> None:
    fast_polls(lab)
    await lab.service.create_queue("noproj", "vertex", queue_config(vertex, project=None))
    nobucket = queue_config(vertex)
    del nobucket["resource_args"]["spec"]["staging_bucket"]
    await lab.service.create_queue("nobucket", "vertex", nobucket)
    await lab.service.create_image_job(IMAGE, entrypoint="python train.py", name="trainer")
    lab.spawn_agent(["noproj", "nobucket"], "va")
    runs = {}
    for queue in ("noproj", "nobucket"):
        item = await lab.service.enqueue("trainer", queue)
        runs[queue] = (await lab.run_of(item.id, within=30)).id
    for queue, run_id in runs.items():
        done = await lab.wait_run(run_id, within=30)
        assert done.state == RunState.FAILED
        assert "starting" in done.timestamps and "running" not in done.timestamps
        message = done.error_message or ""
        assert "\n" not in message and "Traceback" not in message, message
        if queue == "noproj":
            assert message.startswith("project: queue 'noproj' names no Google Cloud project"), \
                message
        else:
            assert message.startswith("resource_args.spec.staging_bucket: the run has no "
                                      "Cloud Storage bucket"), message
    assert vertex.creates() == 0


async def test_a_code_job_is_built_and_pushed_to_the_queues_registry(
        lab: Lab, vertex: JobService) -> None:
    from tests.backends.docker.helpers import BASE_IMAGE, connect_test_daemon

    client = connect_test_daemon()
    try:
        await asyncio.to_thread(_get_json, f"http://{REGISTRY}/v2/")
    except OSError as exc:
        pytest.fail(f"the test registry {REGISTRY} does not answer ({exc}); run "
                    "`scripts/test-services.sh start`.", pytrace=False)
    dest = f"{REGISTRY}/vertex-e2e"
    fast_polls(lab)
    await lab.service.create_queue("vq", "vertex", queue_config(
        vertex, builder={"destination": dest}, base_image=BASE_IMAGE))
    name = f"e2e-vertex-{uuid.uuid4().hex[:8]}"
    await lab.job({"train.py": "print('hello')\n"}, "python3 train.py", name=name,
                  config={"lr": 0.1})
    lab.spawn_agent(["vq"], "va")
    item = await lab.service.enqueue(name, "vq", config={"lr": 0.25})
    run = await lab.run_of(item.id, within=30)
    job = await job_of(vertex, within=80)
    try:
        pool = job.job_spec.worker_pool_specs[0]
        assert pool.container_spec.image_uri.startswith(f"{dest}/{name}:"), \
            pool.container_spec.image_uri
        assert list(pool.container_spec.command) == ["python3", "train.py"]
        assert json.loads(env_of(job)["WANDB_CONFIG"]) == {"lr": 0.25}
        repo, tag = pool.container_spec.image_uri.split("/", 1)[1].rsplit(":", 1)
        tags = await asyncio.to_thread(_get_json, f"http://{REGISTRY}/v2/{repo}/tags/list")
        assert tag in tags["tags"]
        build = await lab.service.run_logs(run.id, streams=("build",), limit=1000)
        assert any(line.text.startswith("push: ") for line in build), [b.text for b in build]
        vertex.set_state(job.name, "SUCCEEDED")
        done = await lab.wait_run(run.id, within=15)
        assert done.state == RunState.FINISHED, done.reason
    finally:
        refs = {ref for image in client.images.list() for ref in image.tags if name in ref}
        for ref in refs:
            with contextlib.suppress(Exception):
                client.images.remove(ref, force=True)
