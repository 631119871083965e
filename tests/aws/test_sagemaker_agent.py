"""The real agent on a sagemaker queue, end to end, against the moto stand-in.

`launch-tui agent` runs in its own process with fake credentials and
`[backends.sagemaker] endpoint_url` pointing at the moto server on 127.0.0.1
(tests/aws/standin.py), through the real boto3: nothing leaves the machine. The
test plays SageMaker's control plane (it moves each training job's status and
SecondaryStatus) and the training container (it writes CloudWatch log streams).
What is asserted is what a user sees (run states, reasons, stored output with its
streams) and what SageMaker was sent (the job's Environment, role, image, tags).

The code-job test builds on the private Docker daemon and pushes to the loopback
registry of `scripts/test-services.sh start` (LAUNCH_TUI_TEST_REGISTRY) while the
ECR repository is made in moto: the queue's `builder.destination` overrides
where the bytes go.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import urllib.request
import uuid
from typing import Any

import pytest

from launch_tui.core.model import ErrorStage, RunState
from tests.agent_harness import Lab, wait_for
from tests.aws.conftest import ROLE, Aws
from tests.aws.standin import ACCOUNT, REGION

IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/trainers/mnist:1"
REGISTRY = os.environ.get("LAUNCH_TUI_TEST_REGISTRY", "127.0.0.1:55000")


def queue_config(aws: Aws, **over: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "region": REGION,
        "s3_output_path": f"{aws.bucket}/runs",
        # snake_case, a bare role name: both turned into what the API wants.
        "resource_args": {"role_arn": ROLE,
                          "resource_config": {"instance_type": "ml.m5.xlarge"},
                          "stopping_condition": {"max_runtime_in_seconds": 3600}},
        "env": {"TEAM": "vision"},
    }
    config.update(over)
    return {k: v for k, v in config.items() if v is not None}


def write_settings(lab: Lab, aws: Aws) -> None:
    lab.home.mkdir(parents=True, exist_ok=True)  # on PostgreSQL nothing else made it
    (lab.home / "settings.toml").write_text(aws.settings())


async def setup(lab: Lab, aws: Aws, **over: Any) -> None:
    write_settings(lab, aws)
    await lab.service.create_queue("smq", "sagemaker", queue_config(aws, **over))
    await lab.service.create_image_job(IMAGE, entrypoint="python train.py --epochs 1",
                                       name="mnist", config_defaults={"lr": 0.1})


async def job_of(aws: Aws, run_id: str, within: float = 30.0) -> str:
    def made() -> str | None:
        return next((n for n in aws.server.job_names() if n.endswith(f"-{run_id}")), None)

    return await wait_for(made, f"the agent to create the training job of run {run_id}",
                          within)


def reason_has(lab: Lab, run_id: str, text: str) -> Any:
    async def check() -> bool:
        return text in ((await lab.service.get_run(run_id)).reason or "")
    return check


async def agent_said(lab: Lab, agent: str, text: str) -> bool:
    return any(text in entry.message for entry in await lab.service.agent_logs(agent))


async def output(lab: Lab, run_id: str) -> list[tuple[str | None, str]]:
    lines = await lab.service.run_logs(run_id, limit=10_000, streams=("stdout", "stderr"))
    return [(line.source, line.text) for line in lines]


# ---------------------------------------------------------------------- tests


async def test_image_job_finishes_with_its_config_override_in_the_jobs_environment(
        lab: Lab, aws: Aws) -> None:
    await setup(lab, aws)
    agent = lab.spawn_agent(["smq"], "sa")
    item = await lab.service.enqueue("mnist", "smq", config={"lr": 0.5})
    run = await lab.run_of(item.id, within=30)
    name = await job_of(aws, run.id)
    assert name == f"mnist-{run.id}"

    desc = aws.server.describe(name)
    env = desc["Environment"]
    assert json.loads(env["WANDB_CONFIG"]) == {"lr": 0.5}
    assert env["LAUNCH_TUI_RUN_ID"] == run.id and env["TEAM"] == "vision"
    assert desc["RoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"
    assert desc["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert desc["AlgorithmSpecification"]["ContainerEntrypoint"] == [
        "python", "train.py", "--epochs", "1"]
    assert desc["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
    assert desc["StoppingCondition"]["MaxRuntimeInSeconds"] == 3600
    assert desc["OutputDataConfig"]["S3OutputPath"] == f"{aws.bucket}/runs"
    tags = aws.server.client("sagemaker").list_tags(ResourceArn=desc["TrainingJobArn"])["Tags"]
    assert {"Key": "launch-tui:run-id", "Value": run.id} in tags

    # InProgress is running; its SecondaryStatus is the stage the run shows.
    await lab.wait_run(run.id, [RunState.RUNNING], within=15)
    await wait_for(reason_has(lab, run.id, "Starting: Launching requested ML instances"),
                   "the run to show SageMaker's first stage", 15)
    aws.server.set_state(name, "InProgress", "Downloading", "Downloading the training image")
    await wait_for(reason_has(lab, run.id, "Downloading: Downloading the training image"),
                   "the run to show the Downloading stage", 15)
    aws.server.write_logs(name, "algo-1-1700000000", "epoch 1 loss 0.5", "epoch 2 loss 0.3")
    aws.server.write_logs(name, "algo-2-1700000000", "worker 2 up")
    aws.server.set_state(name, "InProgress", "Training", "Training in progress")
    await wait_for(reason_has(lab, run.id, "Training: Training in progress"),
                   "the run to show the Training stage", 15)
    await lab.wait_output(run.id, "worker 2 up", within=15)
    aws.server.write_logs(name, "algo-1-1700000000", "done")
    aws.server.set_state(name, "Completed", "Completed", "Training job completed")
    done = await lab.wait_run(run.id, within=15)
    assert done.state == RunState.FINISHED, (done.reason, agent.output())
    assert done.handle is not None and done.handle["data"]["job"] == name

    lines = await output(lab, run.id)
    assert [t for s, t in lines if s == "algo-1-1700000000"] == [
        "epoch 1 loss 0.5", "epoch 2 loss 0.3", "done"], lines
    assert [t for s, t in lines if s == "algo-2-1700000000"] == ["worker 2 up"], lines
    # Each stage once in the agent's log, and no secret-looking value anywhere in it.
    assert await agent_said(lab, "sa", f"run {run.id}: Downloading: Downloading")
    entries = [e.message for e in await lab.service.agent_logs("sa")]
    assert sum("Training: Training in progress" in e for e in entries) == 1, entries
    assert aws.server.create_calls(name) == 1


async def test_a_failed_job_shows_sagemakers_failure_reason(lab: Lab, aws: Aws) -> None:
    await setup(lab, aws)
    lab.spawn_agent(["smq"], "sa")
    item = await lab.service.enqueue("mnist", "smq")
    run = await lab.run_of(item.id, within=30)
    name = await job_of(aws, run.id)
    aws.server.set_state(name, "InProgress", "Training", "Training in progress")
    aws.server.write_logs(name, "algo-1-1700000000", "Traceback (most recent call last):",
                          "ZeroDivisionError: division by zero")
    await lab.wait_output(run.id, "ZeroDivisionError: division by zero", within=15)
    reason = ("AlgorithmError: ExecuteUserScriptError: ExitCode 1 ErrorMessage "
              "\"ZeroDivisionError: division by zero\"")
    aws.server.set_state(name, "Failed", "Failed", "Training job failed", failure_reason=reason)
    done = await lab.wait_run(run.id, within=15)
    assert done.state == RunState.FAILED
    assert done.error_stage == ErrorStage.RUN
    assert done.reason == reason
    assert (done.error_message or "").startswith(reason)
    assert "[algo-1-1700000000] ZeroDivisionError: division by zero" in (done.error_message
                                                                         or "")


async def test_cancel_stops_the_training_job_and_the_run_ends_stopped(lab: Lab, aws: Aws
                                                                      ) -> None:
    await setup(lab, aws)
    lab.spawn_agent(["smq"], "sa")
    item = await lab.service.enqueue("mnist", "smq")
    run = await lab.run_of(item.id, within=30)
    name = await job_of(aws, run.id)
    await lab.wait_run(run.id, [RunState.RUNNING], within=15)
    result = await lab.cli("cancel", run.id)
    assert result.returncode == 0, result.stderr
    done = await lab.wait_run(run.id, within=15)
    assert done.state == RunState.STOPPED, done.reason
    desc = aws.server.describe(name)
    assert desc["TrainingJobStatus"] == "Stopped"
    assert [t["Status"] for t in desc["SecondaryStatusTransitions"]][-2:] == [
        "Stopping", "Stopped"]


async def test_a_restarted_agent_reattaches_and_stores_each_streams_lines_once(
        lab: Lab, aws: Aws) -> None:
    await setup(lab, aws)
    first = lab.spawn_agent(["smq"], "sa")
    item = await lab.service.enqueue("mnist", "smq")
    run = await lab.run_of(item.id, within=30)
    name = await job_of(aws, run.id)
    aws.server.set_state(name, "InProgress", "Training", "Training in progress")
    for i in range(3):
        aws.server.write_logs(name, "algo-1-1700000000", f"a{i}")
        aws.server.write_logs(name, "algo-2-1700000000", f"b{i}")
    await lab.wait_output(run.id, "b2", within=15)
    await lab.wait_output(run.id, "a2", within=15)
    await first.kill()
    for i in range(3, 5):
        aws.server.write_logs(name, "algo-2-1700000000", f"b{i}")
        aws.server.write_logs(name, "algo-1-1700000000", f"a{i}")

    lab.spawn_agent(["smq"], "sa")
    await wait_for(lambda: agent_said(lab, "sa", f"re-attached to run {run.id}"),
                   "the new agent to re-attach", 30)
    await lab.wait_output(run.id, "a4", within=15)
    aws.server.set_state(name, "Completed", "Completed")
    done = await lab.wait_run(run.id, within=15)
    assert done.state == RunState.FINISHED, done.reason
    lines = await output(lab, run.id)
    assert [t for s, t in lines if s == "algo-1-1700000000"] == [f"a{i}" for i in range(5)]
    assert [t for s, t in lines if s == "algo-2-1700000000"] == [f"b{i}" for i in range(5)]
    assert aws.server.create_calls(name) == 1


async def test_an_agent_that_died_while_submitting_adopts_the_job_it_made(
        lab: Lab, aws: Aws) -> None:
    """SageMaker made the job but the agent died before it heard back: the next agent
    finds the job by the run's name instead of making a second one."""
    await setup(lab, aws)
    aws.server.create_delay_s = 30.0
    first = lab.spawn_agent(["smq"], "sa")
    item = await lab.service.enqueue("mnist", "smq")
    run = await lab.run_of(item.id, within=30)
    name = await job_of(aws, run.id)
    await first.kill()
    aws.server.create_delay_s = 0.0
    assert (await lab.service.get_run(run.id)).handle is None

    lab.spawn_agent(["smq"], "sa")
    await wait_for(lambda: agent_said(lab, "sa", f"re-attached to run {run.id}"),
                   "the new agent to re-attach", 30)
    aws.server.set_state(name, "Completed", "Completed")
    done = await lab.wait_run(run.id, within=15)
    assert done.state == RunState.FINISHED, done.reason
    assert aws.server.create_calls(name) == 1
    assert [n for n in aws.server.job_names() if n.endswith(run.id)] == [name]


async def test_a_missing_or_unknown_role_or_bucket_fails_at_starting_in_one_sentence(
        lab: Lab, aws: Aws) -> None:
    write_settings(lab, aws)
    no_role = queue_config(aws)
    del no_role["resource_args"]["role_arn"]
    await lab.service.create_queue("norole", "sagemaker", no_role)
    unknown = queue_config(aws)
    unknown["resource_args"]["role_arn"] = "no-such-role"
    await lab.service.create_queue("badrole", "sagemaker", unknown)
    await lab.service.create_queue("nobucket", "sagemaker",
                                   queue_config(aws, s3_output_path=None))
    await lab.service.create_image_job(IMAGE, entrypoint="python train.py", name="mnist")
    lab.spawn_agent(["norole", "badrole", "nobucket"], "sa")
    runs = {}
    for queue in ("norole", "badrole", "nobucket"):
        item = await lab.service.enqueue("mnist", queue)
        runs[queue] = (await lab.run_of(item.id, within=30)).id
    expected = {
        "norole": "RoleArn: queue 'norole' names no execution role for the training job",
        "badrole": (f"sagemaker: cannot create training job mnist-{runs['badrole']}: Could not "
                    f"assume role arn:aws:iam::{ACCOUNT}:role/no-such-role"),
        "nobucket": "OutputDataConfig.S3OutputPath: queue 'nobucket' names no S3 bucket",
    }
    for queue, run_id in runs.items():
        done = await lab.wait_run(run_id, within=30)
        assert done.state == RunState.FAILED, done.reason
        assert done.error_stage == ErrorStage.RUN
        assert "starting" in done.timestamps and "running" not in done.timestamps
        message = done.error_message or ""
        assert "\n" not in message and "Traceback" not in message, message
        assert message.startswith(expected[queue]), message
    assert not [n for n in aws.server.job_names() if n.endswith(runs["norole"])]
    assert not [n for n in aws.server.job_names() if n.endswith(runs["nobucket"])]


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


async def test_a_code_job_is_built_and_pushed_with_its_ecr_repository_made(
        lab: Lab, aws: Aws) -> None:
    from tests.backends.docker.helpers import BASE_IMAGE, connect_test_daemon

    client = connect_test_daemon()
    try:
        await asyncio.to_thread(_get_json, f"http://{REGISTRY}/v2/")
    except OSError as exc:
        pytest.fail(f"the test registry {REGISTRY} does not answer ({exc}); run "
                    "`scripts/test-services.sh start`.", pytrace=False)
    dest = f"{REGISTRY}/sagemaker-e2e"
    write_settings(lab, aws)
    await lab.service.create_queue("smq", "sagemaker", queue_config(
        aws, builder={"destination": dest}, ecr_repository="team/launch",
        base_image=BASE_IMAGE))
    name = f"e2e-sm-{uuid.uuid4().hex[:8]}"
    await lab.job({"train.py": "print('hello')\n"}, "python3 train.py", name=name,
                  config={"lr": 0.1})
    lab.spawn_agent(["smq"], "sa")
    item = await lab.service.enqueue(name, "smq", config={"lr": 0.25})
    run = await lab.run_of(item.id, within=30)
    job = await job_of(aws, run.id, within=80)
    try:
        desc = aws.server.describe(job)
        image = desc["AlgorithmSpecification"]["TrainingImage"]
        assert image.startswith(f"{dest}/{name}:"), image
        assert desc["AlgorithmSpecification"]["ContainerEntrypoint"] == ["python3", "train.py"]
        assert json.loads(desc["Environment"]["WANDB_CONFIG"]) == {"lr": 0.25}
        repo, tag = image.split("/", 1)[1].rsplit(":", 1)
        tags = await asyncio.to_thread(_get_json, f"http://{REGISTRY}/v2/{repo}/tags/list")
        assert tag in tags["tags"]
        ecr = aws.server.client("ecr").describe_repositories()["repositories"]
        assert f"team/launch/{name}" in [r["repositoryName"] for r in ecr]
        build = [b.text for b in await lab.service.run_logs(run.id, streams=("build",),
                                                             limit=1000)]
        assert any(line.startswith(f"push: created ECR repository team/launch/{name}")
                   for line in build), build
        aws.server.set_state(job, "Completed", "Completed")
        done = await lab.wait_run(run.id, within=15)
        assert done.state == RunState.FINISHED, done.reason
    finally:
        refs = {ref for image in client.images.list() for ref in image.tags if name in ref}
        for ref in refs:
            with contextlib.suppress(Exception):
                client.images.remove(ref, force=True)
