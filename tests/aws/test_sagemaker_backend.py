"""The sagemaker backend and builder in this process, through real boto3 against
the moto stand-in: what the agent-level tests cannot reach cheaply."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from launch_tui.backends.sagemaker_backend import SageMakerBackend
from launch_tui.backends.sagemaker_build import SageMakerBuilder
from launch_tui.core.backend import BackendContext, RunHandle
from launch_tui.core.errors import BackendError, ValidationError
from launch_tui.core.model import JobKind, RunSpec, RunState
from tests.aws.conftest import ROLE, Aws
from tests.aws.standin import ACCOUNT, REGION


def ctx(tmp_path: Path, aws: Aws) -> BackendContext:
    return BackendContext(home=tmp_path, artifacts=tmp_path, settings={
        "endpoint_url": aws.endpoint, "poll_max_s": 0.2, "log_settle_s": 0.1})


def spec(aws: Aws, *, run_id: str, kind: JobKind = JobKind.IMAGE,
         env: dict[str, str] | None = None, **queue: Any) -> RunSpec:
    queue_config = {"region": REGION, "s3_output_path": f"{aws.bucket}/o", **queue}
    return RunSpec(
        run_id=run_id, project="p", queue="smq", resource="sagemaker", job="mnist", version=0,
        kind=kind, entrypoint=("python", "train.py"), config={},
        resource_args={"RoleArn": ROLE, "ResourceConfig": {"InstanceType": "ml.m5.xlarge"}},
        env=env or {"WANDB_RUN_ID": run_id}, source={"image": "img:1"}, environment={},
        job_digest="d", queue_config={k: v for k, v in queue_config.items() if v is not None})


async def test_a_second_submit_adopts_the_job_of_the_first(tmp_path: Path, aws: Aws) -> None:
    backend = SageMakerBackend(ctx(tmp_path, aws))
    run = spec(aws, run_id="adopt001")
    first = await backend.submit(run)
    second = await backend.submit(run)
    assert first == second == RunHandle("sagemaker", "adopt001",
                                        {"job": "mnist-adopt001", "region": REGION})
    assert aws.server.create_calls("mnist-adopt001") == 2  # the second was refused…
    assert aws.server.job_names().count("mnist-adopt001") == 1  # …and nothing duplicated
    assert await backend.find("adopt001", run) == first
    assert await backend.find("nosuch01", spec(aws, run_id="nosuch01")) is None


async def test_logs_read_every_stream_and_end_after_the_job(tmp_path: Path, aws: Aws) -> None:
    backend = SageMakerBackend(ctx(tmp_path, aws))
    handle = await backend.submit(spec(aws, run_id="logs0001"))
    name = handle.data["job"]
    aws.server.write_logs(name, "algo-1-1", "one\ntwo")  # one event, two lines
    aws.server.write_logs(name, "algo-2-1", "three")

    async def finish() -> None:
        await asyncio.sleep(0.3)
        aws.server.write_logs(name, "algo-2-1", "four")
        aws.server.set_state(name, "Completed", "Completed")

    task = asyncio.create_task(finish())
    chunks = [c async for c in backend.logs(handle)]
    await task
    assert [(c.source, c.text) for c in chunks if c.source == "algo-1-1"] == [
        ("algo-1-1", "one"), ("algo-1-1", "two")]
    assert [c.text for c in chunks if c.source == "algo-2-1"] == ["three", "four"]
    assert (await backend.status(handle)).state == RunState.FINISHED
    # Without follow: what is there now, once.
    again = [c.text async for c in backend.logs(handle, follow=False)]
    assert sorted(again) == ["four", "one", "three", "two"]


async def test_an_environment_value_over_the_limit_is_refused_before_anything_is_made(
        tmp_path: Path, aws: Aws) -> None:
    backend = SageMakerBackend(ctx(tmp_path, aws))
    run = spec(aws, run_id="bigenv01", env={"WANDB_CONFIG": "x" * 600})
    with pytest.raises(ValidationError, match=r"^environment\.WANDB_CONFIG: its value is 600 "):
        await backend.submit(run)
    assert "mnist-bigenv01" not in aws.server.job_names()


async def test_missing_credentials_and_region_are_one_sentence(
        tmp_path: Path, aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = SageMakerBackend(ctx(tmp_path, aws))
    with pytest.raises(BackendError) as err:
        await backend.submit(spec(aws, run_id="noregn01", region=None))
    assert str(err.value).startswith("sagemaker: no AWS region: set region in the queue's "
                                     "config")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    backend = SageMakerBackend(ctx(tmp_path, aws))
    with pytest.raises(BackendError) as err:
        await backend.submit(spec(aws, run_id="nocred01"))
    assert str(err.value) == (
        "sagemaker: cannot read the AWS account (sts:GetCallerIdentity): no AWS credentials "
        "found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile with "
        "credentials).")


async def test_the_builder_makes_the_ecr_repository_and_never_logs_the_token(
        tmp_path: Path, aws: Aws) -> None:
    builder = SageMakerBuilder(ctx(tmp_path, aws))
    run = spec(aws, run_id="build001", kind=JobKind.CODE, ecr_repository="team/launch")
    lines: list[str] = []

    async def log(line: str) -> None:
        lines.append(line)

    auth = await builder._prepare_push(run, log)
    assert auth is not None and auth["password"]
    registry = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    assert builder.destination(run) == f"{registry}/team/launch"
    repos = aws.server.client("ecr").describe_repositories()["repositories"]
    assert "team/launch/mnist" in [r["repositoryName"] for r in repos]
    assert lines == ["push: created ECR repository team/launch/mnist"]
    assert builder.scrub(f"denied for {auth['password']}") == "denied for ***"
    # A second build finds the repository there.
    lines.clear()
    await builder._prepare_push(run, log)
    assert lines == []
    # With the queue's builder.destination the bytes go there, and ECR's token does not.
    other = spec(aws, run_id="build002", kind=JobKind.CODE,
                 builder={"destination": "127.0.0.1:55000/mirror"})
    assert await builder._prepare_push(other, log) is None
    assert builder.destination(other) == "127.0.0.1:55000/mirror"
