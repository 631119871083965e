"""A run as an Amazon SageMaker training job: its name, its request, its state.

Pure and SDK-free, so core can check resource args (`check_sagemaker_args`) on
machines without the `sagemaker` extra, and tests can read the rules directly.

Resource args are `CreateTrainingJob` parameters, in the API's CamelCase
(`RoleArn`, `ResourceConfig: {InstanceType: …}`) or snake_case (`role_arn`,
`resource_config: {instance_type: …}`), at any depth; `normalise` turns them
into the API's spelling. Keys under `HyperParameters`, `Environment` and the
debugger's parameter maps are the user's own and are kept as written. `env`
is accepted as another name for `Environment`, as on the other targets.

launch-tui fills in what makes it this run: `TrainingJobName` (from the job and
the run id, within SageMaker's 63 characters), the image and the job's
entrypoint, the run's environment, the run-id tag, and defaults for what the API
requires (`TrainingInputMode: File`, `InstanceCount: 1`, `VolumeSizeInGB: 30`,
`MaxRuntimeInSeconds: 86400`, the queue's `s3_output_path`).

SageMaker has no secret references: every variable of the run's environment,
secret-looking names included, reaches the job as a plain `Environment` entry,
visible to anyone who may `DescribeTrainingJob`. launch-tui never logs them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from launch_tui.core.backend import RunStatus
from launch_tui.core.errors import ValidationError
from launch_tui.core.model import RunSpec, RunState

TAG_RUN = "launch-tui:run-id"
TAG_QUEUE = "launch-tui:queue"
TAG_PROJECT = "launch-tui:project"
OUR_TAGS = (TAG_RUN, TAG_QUEUE, TAG_PROJECT)
MAX_NAME = 63
NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
ENV_VALUE_MAX = 512  # SageMaker's limit on one Environment value (and on a name)
ENV_ENTRIES_MAX = 100
ENV_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
DEFAULT_ECR_REPOSITORY = "launch-tui"
DEFAULT_VOLUME_GB = 30
DEFAULT_MAX_RUNTIME_S = 86400

# Queue-config keys of a sagemaker queue (beyond the common ones).
QUEUE_KEYS = ("region", "profile", "s3_output_path", "ecr_repository", "builder")

# Parts of snake_case names that are not simply capitalised in the API's spelling.
_WORDS = {"gb": "GB", "s3": "S3", "sagemaker": "SageMaker", "arn": "Arn", "id": "Id",
          "kms": "Kms", "vpc": "Vpc"}
# Maps whose keys are the user's own names (kept as written).
_OPAQUE = frozenset({"HyperParameters", "Environment", "RuleParameters",
                     "CollectionParameters", "HookParameters", "ProfilingParameters"})
_BAD_NAME_CHARS = re.compile(r"[^a-zA-Z0-9-]+")
_S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$")
_ROLE_NAME = re.compile(r"^[\w+=,.@/-]{1,512}$")
_ECR_REPO = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")


# ---------------------------------------------------------------- spelling

def camel(key: str) -> str:
    """`volume_size_in_gb` → `VolumeSizeInGB`; `roleArn` → `RoleArn`; CamelCase as is."""
    if "_" not in key:
        return key[:1].upper() + key[1:]
    return "".join(_WORDS.get(p.lower(), p[:1].upper() + p[1:]) for p in key.split("_") if p)


def snake(key: str) -> str:
    """`VolumeSizeInGB` → `volume_size_in_gb` (the inverse of `camel` for API names)."""
    for word in ("SageMaker", "GB", "S3"):
        key = key.replace(word, f"_{word.lower()}_")
    key = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key)
    return re.sub(r"_+", "_", key).strip("_").lower()


def normalise(args: Mapping[str, Any], where: str = "resource_args") -> dict[str, Any]:
    """The args in the API's spelling; two spellings of one key are refused."""
    out: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for key, value in args.items():
        name = "Environment" if key == "env" else camel(str(key))
        if name in seen:
            raise ValidationError(
                f"{where}.{key}: the same parameter as {where}.{seen[name]} ({name}); give "
                "it once.", field=f"{where}.{key}")
        seen[name] = str(key)
        out[name] = _normalise_value(name, value, f"{where}.{key}")
    return out


def _normalise_value(name: str, value: Any, where: str) -> Any:
    if name in _OPAQUE:
        return value
    if isinstance(value, Mapping):
        return normalise(value, where)
    if isinstance(value, list):
        return [_normalise_value(name, v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


# ---------------------------------------------------------------- names

def job_name(spec: RunSpec) -> str:
    return training_job_name(spec.job, spec.run_id)


def training_job_name(job: str, run_id: str) -> str:
    """`{job}-{run_id}` within SageMaker's rule (`^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}`).

    The run id is kept whole; a long job name is cut, with a short hash of it so two
    long names sharing a prefix stay apart. The same run always gets the same name:
    that is what makes a second submit find the first job.
    """
    tail = _BAD_NAME_CHARS.sub("-", run_id).strip("-") or "run"
    head = _BAD_NAME_CHARS.sub("-", job).strip("-")
    room = MAX_NAME - len(tail) - 1
    if head and len(head) > room:
        digest = hashlib.sha256(job.encode()).hexdigest()[:6]
        head = head[: max(0, room - 7)].rstrip("-")
        head = f"{head}-{digest}" if head else digest
    name = f"{head}-{tail}" if head else tail
    return name[:MAX_NAME].strip("-")


def role_arn(value: str, account: str, partition: str = "aws") -> str:
    """A role ARN as given, or a bare role name (optionally with a path, such as
    `service-role/Name`) as the ARN of that role in the caller's account."""
    if value.startswith("arn:"):
        return value
    return f"arn:{partition}:iam::{account}:role/{value.lstrip('/')}"


def ecr_registry(account: str, region: str) -> str:
    suffix = ".com.cn" if region.startswith("cn-") else ".com"
    return f"{account}.dkr.ecr.{region}.amazonaws{suffix}"


# ---------------------------------------------------------------- checks

def check_sagemaker_args(resource_args: Mapping[str, Any], queue_config: Mapping[str, Any],
                         queue: str | None = None) -> None:
    """The queue's sagemaker keys and the args' own rules, one sentence naming the field.

    Run by core at queue create/update and at enqueue (SDK-free), and again at submit.
    """
    check_queue_keys(queue_config)
    args = normalise(resource_args)
    if "TrainingJobName" in args:
        raise ValidationError(
            "resource_args.TrainingJobName: launch-tui names the training job after the "
            "run (so a second submit finds the first job); leave it out.",
            field="resource_args.TrainingJobName")
    role = args.get("RoleArn")
    if role is not None and not (isinstance(role, str) and (
            _ROLE_ARN.match(role) or (not role.startswith("arn:") and _ROLE_NAME.match(role)))):
        raise ValidationError(
            f"resource_args.RoleArn: {role!r} is neither an IAM role ARN "
            "(arn:aws:iam::123456789012:role/Name) nor a role name.",
            field="resource_args.RoleArn")
    env = args.get("Environment")
    if env is not None:
        if not isinstance(env, Mapping):
            raise ValidationError("resource_args.Environment: must be a mapping of names to "
                                  "values.", field="resource_args.Environment")
        check_environment({str(k): str(v) for k, v in env.items()}, "resource_args.Environment")
    output = (args.get("OutputDataConfig") or {}).get("S3OutputPath")
    if output is not None:
        _check_s3("resource_args.OutputDataConfig.S3OutputPath", output)
    tags = args.get("Tags")
    if tags is not None and not (isinstance(tags, list) and all(
            isinstance(t, Mapping) and "Key" in t and "Value" in t for t in tags)):
        raise ValidationError("resource_args.Tags: must be a list of {Key, Value} mappings.",
                              field="resource_args.Tags")


def check_queue_keys(queue_config: Mapping[str, Any]) -> None:
    region = queue_config.get("region")
    if region is not None and not (isinstance(region, str) and _REGION.match(region)):
        raise ValidationError(f"region: {region!r} is not an AWS region name (e.g. "
                              "us-east-1).", field="region")
    profile = queue_config.get("profile")
    if profile is not None and not (isinstance(profile, str) and profile):
        raise ValidationError("profile: must be the name of an AWS profile.", field="profile")
    output = queue_config.get("s3_output_path")
    if output is not None:
        _check_s3("s3_output_path", output)
    repo = queue_config.get("ecr_repository")
    if repo is not None and not (isinstance(repo, str) and len(repo) <= 200
                                 and _ECR_REPO.match(repo)):
        raise ValidationError(
            f"ecr_repository: {repo!r} is not an ECR repository name (lower case, e.g. "
            "team/launch).", field="ecr_repository")
    builder = queue_config.get("builder")
    if builder is not None:
        dest = builder.get("destination") if isinstance(builder, Mapping) else None
        if (not isinstance(builder, Mapping) or set(builder) - {"destination"}
                or not isinstance(dest, str) or not re.match(
                    r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9._-]+)*$",
                    dest.rstrip("/"))):
            raise ValidationError(
                "builder: must be a mapping with one key, destination (a registry repository "
                "that replaces the queue's ECR repository as where images are pushed, e.g. "
                "registry.example.com/team/launch).", field="builder")


def _check_s3(field: str, value: Any) -> None:
    if not (isinstance(value, str) and _S3_URI.match(value)):
        raise ValidationError(f"{field}: {value!r} is not an S3 URI (s3://bucket/prefix).",
                              field=field)


def check_environment(env: Mapping[str, str], where: str = "environment") -> None:
    """SageMaker's limits on `Environment`, refused (never truncated) one sentence each."""
    if len(env) > ENV_ENTRIES_MAX:
        raise ValidationError(
            f"{where}: {len(env)} variables, over SageMaker's limit of {ENV_ENTRIES_MAX} for "
            "a training job's Environment.", field=where)
    for name, value in env.items():
        if not ENV_NAME_RE.match(name) or len(name) > ENV_VALUE_MAX:
            raise ValidationError(
                f"{where}.{name}: not a name SageMaker accepts in Environment (letters, digits "
                "and '_', not starting with a digit).", field=f"{where}.{name}")
        if len(value) > ENV_VALUE_MAX:
            raise ValidationError(
                f"{where}.{name}: its value is {len(value)} characters, over SageMaker's limit "
                f"of {ENV_VALUE_MAX} for an Environment value (it is not truncated; pass it "
                "another way, e.g. as HyperParameters or a file in S3).",
                field=f"{where}.{name}")


# ---------------------------------------------------------------- the request

def run_env(spec: RunSpec, args_env: Mapping[str, Any] | None) -> dict[str, str]:
    return {**spec.env, **{str(k): str(v) for k, v in (args_env or {}).items()}}


def training_request(spec: RunSpec, image: str | None, *, account: str,
                     partition: str = "aws") -> dict[str, Any]:
    """The run's `CreateTrainingJob` parameters; raises ValidationError naming what
    is missing (a role, an output bucket, an instance type, an image)."""
    check_sagemaker_args(spec.resource_args, spec.queue_config, spec.queue)
    args = normalise(spec.resource_args)
    which = f"queue '{spec.queue}'"
    role = args.get("RoleArn")
    if not role:
        raise ValidationError(
            f"RoleArn: {which} names no execution role for the training job (set "
            "resource_args.RoleArn to a role name or ARN the job runs as).",
            field="resource_args.RoleArn")
    request: dict[str, Any] = {k: v for k, v in args.items() if k != "Environment"}
    request["RoleArn"] = role_arn(str(role), account, partition)
    request["TrainingJobName"] = job_name(spec)

    output = dict(args.get("OutputDataConfig") or {})
    output.setdefault("S3OutputPath", spec.queue_config.get("s3_output_path"))
    if not output["S3OutputPath"]:
        raise ValidationError(
            f"OutputDataConfig.S3OutputPath: {which} names no S3 bucket for the job's output "
            "(set s3_output_path: s3://bucket/prefix in its config, or "
            "resource_args.OutputDataConfig.S3OutputPath).",
            field="resource_args.OutputDataConfig.S3OutputPath")
    request["OutputDataConfig"] = output

    algo = dict(args.get("AlgorithmSpecification") or {})
    if not algo.get("AlgorithmName"):
        algo.setdefault("TrainingImage", image)
        if not algo.get("TrainingImage"):
            raise ValidationError(
                "AlgorithmSpecification.TrainingImage: the run has no image to train with.",
                field="resource_args.AlgorithmSpecification.TrainingImage")
        if spec.entrypoint and "ContainerEntrypoint" not in algo:
            algo["ContainerEntrypoint"] = list(spec.entrypoint)
    algo.setdefault("TrainingInputMode", "File")
    request["AlgorithmSpecification"] = algo

    resources = dict(args.get("ResourceConfig") or {})
    if not resources.get("InstanceGroups"):
        if not resources.get("InstanceType"):
            raise ValidationError(
                f"ResourceConfig.InstanceType: {which} names no instance type (set "
                "resource_args.ResourceConfig.InstanceType, e.g. ml.m5.xlarge).",
                field="resource_args.ResourceConfig.InstanceType")
        resources.setdefault("InstanceCount", 1)
    resources.setdefault("VolumeSizeInGB", DEFAULT_VOLUME_GB)
    request["ResourceConfig"] = resources
    stopping = dict(args.get("StoppingCondition") or {})
    stopping.setdefault("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_S)
    request["StoppingCondition"] = stopping

    env = run_env(spec, args.get("Environment"))
    check_environment(env)
    request["Environment"] = env
    ours = {TAG_RUN: spec.run_id, TAG_QUEUE: spec.queue, TAG_PROJECT: spec.project}
    kept = [t for t in args.get("Tags") or [] if t.get("Key") not in ours]
    request["Tags"] = [*kept, *({"Key": k, "Value": v} for k, v in ours.items())]
    return request


# ---------------------------------------------------------------- states

# SecondaryStatus values that say where a stopped job ended other than by a request.
_TIMED_OUT = {"MaxRuntimeExceeded": "StoppingCondition.MaxRuntimeInSeconds",
              "MaxWaitTimeExceeded": "StoppingCondition.MaxWaitTimeInSeconds"}


def job_status(desc: Mapping[str, Any]) -> RunStatus:
    """A run's status from `DescribeTrainingJob`.

        InProgress   running, the SecondaryStatus (and its message) as the stage shown
        Stopping     stopping
        Completed    finished
        Stopped      stopped; but failed when it ran out of its StoppingCondition time,
                     and preempted when spot capacity was taken back (Interrupted)
        Failed       failed, with FailureReason
    """
    status = str(desc.get("TrainingJobStatus") or "")
    secondary = str(desc.get("SecondaryStatus") or "")
    if status == "InProgress":
        return RunStatus(RunState.RUNNING, stage(desc))
    if status == "Stopping":
        return RunStatus(RunState.STOPPING, secondary or "Stopping")
    if status == "Completed":
        return RunStatus(RunState.FINISHED, exit_code=0)
    if status == "Stopped":
        if secondary in _TIMED_OUT:
            return RunStatus(RunState.FAILED,
                             f"timed out: the job ran past its {_TIMED_OUT[secondary]}")
        if secondary == "Interrupted":
            return RunStatus(RunState.PREEMPTED, "spot capacity was interrupted")
        return RunStatus(RunState.STOPPED, "stopped on SageMaker")
    if status == "Failed":
        reason = str(desc.get("FailureReason") or "the training job failed").strip()
        return RunStatus(RunState.FAILED, reason)
    return RunStatus(RunState.STARTING, f"SageMaker reports {status or 'no status'}")


def stage(desc: Mapping[str, Any]) -> str:
    """`Training: Training image download completed. Training in progress.`"""
    secondary = str(desc.get("SecondaryStatus") or "Starting")
    transitions = desc.get("SecondaryStatusTransitions") or []
    last = transitions[-1] if transitions else {}
    message = str(last.get("StatusMessage") or "").strip()
    if message and last.get("Status") == secondary:
        return f"{secondary}: {message}"
    return secondary
