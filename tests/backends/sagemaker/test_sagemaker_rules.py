"""The SDK-free SageMaker rules: names, spelling of args, the request, limits, states."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest

from launch_tui.backends import sagemaker_rules as rules
from launch_tui.backends.schemas import SAGEMAKER
from launch_tui.core import resolve
from launch_tui.core.backend import RunStatus
from launch_tui.core.errors import ValidationError
from launch_tui.core.model import JobKind, RunSpec, RunState

NAME_RULE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")  # SageMaker's documented rule


def spec(args: dict[str, Any] | None = None, *, env: dict[str, str] | None = None,
         queue_config: dict[str, Any] | None = None, job: str = "train-mnist",
         run_id: str = "k3x9q2ab", entrypoint: tuple[str, ...] = ("python", "train.py"),
         ) -> RunSpec:
    return RunSpec(
        run_id=run_id, project="vision", queue="sm", resource="sagemaker", job=job, version=0,
        kind=JobKind.IMAGE, entrypoint=entrypoint, config={}, resource_args=args or {},
        env=env if env is not None else {"WANDB_RUN_ID": run_id}, source={"image": "img:1"},
        environment={}, job_digest="d",
        queue_config=queue_config if queue_config is not None
        else {"s3_output_path": "s3://bucket/out"},
    )


BASE = {"RoleArn": "trainer", "ResourceConfig": {"InstanceType": "ml.m5.xlarge"}}


# ---------------------------------------------------------------- names

@pytest.mark.parametrize("job", ["train", "my_job.v2", "x" * 120, "___", "Ünïcode job!",
                                 "a--b", "-lead-and-trail-"])
def test_job_names_follow_sagemakers_rule_and_keep_the_run_id(job: str) -> None:
    name = rules.training_job_name(job, "k3x9q2ab")
    assert NAME_RULE.match(name), name
    assert len(name) <= 63
    assert name.endswith("-k3x9q2ab") or name == "k3x9q2ab"


def test_long_job_names_sharing_a_prefix_stay_apart() -> None:
    a = rules.training_job_name("p" * 70 + "-alpha", "k3x9q2ab")
    b = rules.training_job_name("p" * 70 + "-beta", "k3x9q2ab")
    assert a != b and len(a) <= 63 and len(b) <= 63


def test_a_run_always_gets_the_same_name() -> None:
    assert rules.job_name(spec()) == rules.job_name(spec()) == "train-mnist-k3x9q2ab"


def test_bare_role_names_become_arns_in_the_callers_account_and_partition() -> None:
    assert rules.role_arn("trainer", "111122223333") == "arn:aws:iam::111122223333:role/trainer"
    assert (rules.role_arn("service-role/Trainer", "111122223333", "aws-cn")
            == "arn:aws-cn:iam::111122223333:role/service-role/Trainer")
    arn = "arn:aws:iam::999988887777:role/other"
    assert rules.role_arn(arn, "111122223333") == arn


# ---------------------------------------------------------------- spelling

def test_snake_case_and_camel_case_args_are_the_same_request() -> None:
    snake = {
        "role_arn": "trainer",
        "resource_config": {"instance_type": "ml.g5.xlarge", "instance_count": 2,
                            "volume_size_in_gb": 50},
        "stopping_condition": {"max_runtime_in_seconds": 600},
        "output_data_config": {"s3_output_path": "s3://bucket/x", "kms_key_id": "k"},
        "hyper_parameters": {"learning_rate": "0.1"},
        "algorithm_specification": {"enable_sagemaker_metrics_time_series": True},
        "input_data_config": [{"channel_name": "train", "data_source": {"s3_data_source": {
            "s3_data_type": "S3Prefix", "s3_uri": "s3://bucket/data"}}}],
        "tags": [{"key": "team", "value": "vision"}],
    }
    camel = {
        "RoleArn": "trainer",
        "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 2,
                           "VolumeSizeInGB": 50},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/x", "KmsKeyId": "k"},
        "HyperParameters": {"learning_rate": "0.1"},  # the user's own keys, as written
        "AlgorithmSpecification": {"EnableSageMakerMetricsTimeSeries": True},
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": "s3://bucket/data"}}}],
        "Tags": [{"Key": "team", "Value": "vision"}],
    }
    assert rules.normalise(snake) == camel
    assert (rules.training_request(spec(snake), "img:1", account="111122223333")
            == rules.training_request(spec(camel), "img:1", account="111122223333"))


@pytest.mark.parametrize("name", sorted(k for k in SAGEMAKER["properties"] if k[0].isupper()))
def test_every_parameter_of_the_schema_has_its_snake_case_twin(name: str) -> None:
    twin = rules.snake(name)
    assert twin in SAGEMAKER["properties"]
    assert rules.camel(twin) == name


def test_both_spellings_of_one_parameter_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"resource_args\.role_arn: the same parameter as "
                                              r"resource_args\.RoleArn \(RoleArn\)"):
        rules.normalise({"RoleArn": "a", "role_arn": "b"})


def test_the_schema_takes_either_spelling_and_refuses_unknown_keys() -> None:
    resolve.validate({"role_arn": "x", "ResourceConfig": {}}, SAGEMAKER, "resource_args")
    with pytest.raises(ValidationError):
        resolve.validate({"InstanceTypo": "x"}, SAGEMAKER, "resource_args")


# ---------------------------------------------------------------- the request

def test_the_request_is_the_run_filled_into_the_queues_args() -> None:
    req = rules.training_request(
        spec({**BASE, "Environment": {"EXTRA": "1"}, "Tags": [{"Key": "team", "Value": "v"}]},
             env={"WANDB_RUN_ID": "k3x9q2ab", "EXTRA": "0"}),
        "123.dkr.ecr.us-east-1.amazonaws.com/launch-tui/train:abc", account="111122223333")
    assert req["TrainingJobName"] == "train-mnist-k3x9q2ab"
    assert req["RoleArn"] == "arn:aws:iam::111122223333:role/trainer"
    assert req["AlgorithmSpecification"] == {
        "TrainingImage": "123.dkr.ecr.us-east-1.amazonaws.com/launch-tui/train:abc",
        "ContainerEntrypoint": ["python", "train.py"], "TrainingInputMode": "File"}
    assert req["ResourceConfig"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1,
                                     "VolumeSizeInGB": 30}
    assert req["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400}
    assert req["OutputDataConfig"] == {"S3OutputPath": "s3://bucket/out"}
    # The queue's args' Environment wins over the run's, as on the other targets.
    assert req["Environment"] == {"WANDB_RUN_ID": "k3x9q2ab", "EXTRA": "1"}
    assert {"Key": rules.TAG_RUN, "Value": "k3x9q2ab"} in req["Tags"]
    assert {"Key": "team", "Value": "v"} in req["Tags"]


def test_a_training_image_in_the_args_is_kept() -> None:
    args = {**BASE, "AlgorithmSpecification": {"TrainingImage": "mine:2",
                                               "ContainerEntrypoint": ["bash"]}}
    algo = rules.training_request(spec(args), "built:1", account="1" * 12)[
        "AlgorithmSpecification"]
    assert algo["TrainingImage"] == "mine:2" and algo["ContainerEntrypoint"] == ["bash"]


@pytest.mark.parametrize(("args", "queue_config", "message"), [
    ({"ResourceConfig": {"InstanceType": "ml.m5.xlarge"}}, {"s3_output_path": "s3://b1b/o"},
     "RoleArn: queue 'sm' names no execution role for the training job"),
    (BASE, {}, "OutputDataConfig.S3OutputPath: queue 'sm' names no S3 bucket for the job's "
               "output"),
    ({"RoleArn": "trainer"}, {"s3_output_path": "s3://b1b/o"},
     "ResourceConfig.InstanceType: queue 'sm' names no instance type"),
])
def test_what_is_missing_is_named_in_one_sentence(args: dict[str, Any],
                                                   queue_config: dict[str, Any],
                                                   message: str) -> None:
    with pytest.raises(ValidationError) as err:
        rules.training_request(spec(args, queue_config=queue_config), "img:1", account="1" * 12)
    text = str(err.value)
    assert text.startswith(message)
    assert not re.search(r"\.\s+[A-Z]", text) and text.endswith(").")  # one sentence


def test_an_environment_value_over_512_characters_is_refused_naming_it() -> None:
    env = {"WANDB_RUN_ID": "k3x9q2ab", "WANDB_CONFIG": "x" * 513}
    with pytest.raises(ValidationError) as err:
        rules.training_request(spec(BASE, env=env), "img:1", account="1" * 12)
    assert str(err.value).startswith(
        "environment.WANDB_CONFIG: its value is 513 characters, over SageMaker's limit of 512 "
        "for an Environment value (it is not truncated")
    assert err.value.field == "environment.WANDB_CONFIG"
    # 512 exactly is within the limit.
    env["WANDB_CONFIG"] = "x" * 512
    req = rules.training_request(spec(BASE, env=env), "img:1", account="1" * 12)
    assert req["Environment"]["WANDB_CONFIG"] == "x" * 512


def test_queue_args_are_checked_at_enqueue_without_the_sdk() -> None:
    with pytest.raises(ValidationError, match=r"resource_args\.Environment\.BIG"):
        rules.check_sagemaker_args({"env": {"BIG": "y" * 600}}, {})
    with pytest.raises(ValidationError, match=r"resource_args\.TrainingJobName"):
        rules.check_sagemaker_args({"training_job_name": "mine"}, {})
    with pytest.raises(ValidationError, match=r"^region: 'mars' is not an AWS region"):
        rules.check_sagemaker_args({}, {"region": "mars"})
    with pytest.raises(ValidationError, match=r"^s3_output_path: 'bucket' is not an S3 URI"):
        rules.check_sagemaker_args({}, {"s3_output_path": "bucket"})
    with pytest.raises(ValidationError, match=r"^ecr_repository: 'Team/X'"):
        rules.check_sagemaker_args({}, {"ecr_repository": "Team/X"})
    rules.check_sagemaker_args({"role_arn": "arn:aws:iam::111122223333:role/x"},
                               {"region": "eu-west-1", "ecr_repository": "team/launch",
                                "builder": {"destination": "127.0.0.1:55000/launch"}})


# ---------------------------------------------------------------- states

def describe(status: str, secondary: str = "", message: str = "", **kw: Any) -> dict[str, Any]:
    transitions = [{"Status": secondary, "StartTime": datetime(2026, 1, 1),
                    "StatusMessage": message}] if secondary else []
    return {"TrainingJobStatus": status, "SecondaryStatus": secondary,
            "SecondaryStatusTransitions": transitions, **kw}


@pytest.mark.parametrize(("desc", "expected"), [
    (describe("InProgress", "Starting", "Preparing the instances for training"),
     RunStatus(RunState.RUNNING, "Starting: Preparing the instances for training")),
    (describe("InProgress", "Downloading"), RunStatus(RunState.RUNNING, "Downloading")),
    (describe("InProgress", "Training", "Training image download completed. Training in "
                                        "progress."),
     RunStatus(RunState.RUNNING, "Training: Training image download completed. Training in "
                                 "progress.")),
    (describe("InProgress", "Uploading"), RunStatus(RunState.RUNNING, "Uploading")),
    (describe("Stopping", "Stopping"), RunStatus(RunState.STOPPING, "Stopping")),
    (describe("Completed", "Completed"), RunStatus(RunState.FINISHED, exit_code=0)),
    (describe("Stopped", "Stopped"), RunStatus(RunState.STOPPED, "stopped on SageMaker")),
    (describe("Stopped", "MaxRuntimeExceeded"),
     RunStatus(RunState.FAILED, "timed out: the job ran past its "
                                "StoppingCondition.MaxRuntimeInSeconds")),
    (describe("Stopped", "Interrupted"),
     RunStatus(RunState.PREEMPTED, "spot capacity was interrupted")),
    (describe("Failed", "Failed", FailureReason="AlgorithmError: ExecuteUserScriptError"),
     RunStatus(RunState.FAILED, "AlgorithmError: ExecuteUserScriptError")),
])
def test_states_map_to_run_states(desc: dict[str, Any], expected: RunStatus) -> None:
    assert rules.job_status(desc) == expected
