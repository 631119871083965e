"""JSON schemas of each target resource's resource args.

Kept apart from the backend modules and free of SDK imports, so the core can
validate queue configs and the TUI can build forms on any machine.
"""

from __future__ import annotations

import re
from typing import Any

_ENV: dict[str, Any] = {
    "type": "object",
    "description": "Extra environment variables for the job",
    "additionalProperties": {"type": "string"},
}

LOCAL_PROCESS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "env": _ENV,
        "timeout_s": {
            "type": "integer",
            "minimum": 1,
            "description": "Stop the run after this many seconds",
        },
        "nice": {
            "type": "integer",
            "minimum": 0,
            "maximum": 19,
            "description": "Lower the job's CPU priority by this much (as `nice -n`; "
                           "default 5, 0 for none), so the agent, the runs' supervisors "
                           "and interactive work stay responsive while jobs are busy",
        },
    },
}

DOCKER: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "cpus": {"type": "number", "exclusiveMinimum": 0, "description": "CPU limit, e.g. 1.5"},
        "memory": {
            "type": "string",
            "pattern": r"^[0-9]+[bkmgBKMG]?$",
            "description": "Memory limit, e.g. 512m or 4g",
        },
        "gpus": {
            "anyOf": [{"type": "integer", "minimum": 0}, {"const": "all"}],
            "description": "Number of GPUs, or 'all'",
        },
        "shm_size": {
            "type": "string",
            "pattern": r"^[0-9]+[bkmgBKMG]?$",
            "description": "Size of /dev/shm, e.g. 1g",
        },
        "env": _ENV,
        "network": {
            "type": "string",
            "enum": ["none", "host", "bridge"],
            "description": "Container network mode",
        },
        "volumes": {
            "type": "array",
            "items": {"type": "string", "pattern": r"^[^:]+:/[^:]*(:(ro|rw))?$"},
            "description": "HOST:CONTAINER[:ro|rw] mounts (only if the queue allows volumes)",
        },
        "timeout_s": {"type": "integer", "minimum": 1, "description": "Stop after N seconds"},
    },
}

# A queue's partial batch/v1 Job (W&B Launch's shape: `metadata`, `spec` with
# `template.spec`, or `spec` as a bare Pod spec) plus shorthands; launch-tui fills in
# the image, command, environment and labels (backends/kubernetes_manifest.py).
KUBERNETES: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "namespace": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                      "maxLength": 63, "description": "Namespace of the run's Job"},
        "cpu": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?m?$",
                "description": "CPU request, e.g. 500m or 2"},
        "memory": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?([EPTGMK]i?|[eptgmk])?$",
                   "description": "Memory request and limit, e.g. 2Gi"},
        "gpus": {"type": "integer", "minimum": 0, "description": "nvidia.com/gpu limit"},
        "node_selector": {"type": "object", "additionalProperties": {"type": "string"}},
        "service_account": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "env": _ENV,
        "backoff_limit": {"type": "integer", "minimum": 0,
                          "description": "Pod retries before the Job fails (default 0)"},
        "parallelism": {"type": "integer", "minimum": 1,
                        "description": "Pods run at once (each must succeed)"},
        "active_deadline_s": {"type": "integer", "minimum": 1,
                              "description": "Fail the run after this many seconds"},
        "ttl_seconds_after_finished": {
            "type": "integer", "minimum": 0,
            "description": "How long the finished Job stays in the cluster (default 3600)"},
        "apiVersion": {"const": "batch/v1"},
        "kind": {"const": "Job"},
        "metadata": {"type": "object", "description": "The Job's metadata (labels, annotations)"},
        "spec": {"type": "object",
                 "description": "A Job spec (with template.spec), or a bare Pod spec"},
    },
}

# `CreateTrainingJob` parameters (launch-tui names the job and fills in the image,
# entrypoint, environment and run tags: backends/sagemaker_rules.py), each in the
# API's CamelCase or in snake_case; nested keys may use either spelling too.
_SAGEMAKER_PARAMS: dict[str, dict[str, Any]] = {
    "RoleArn": {"type": "string", "description":
                "Execution role: an IAM role ARN, or a role name in the agent's account"},
    "AlgorithmSpecification": {"type": "object", "description":
                               "TrainingImage (default: the run's image), TrainingInputMode, "
                               "ContainerEntrypoint (default: the job's entrypoint), …"},
    "ResourceConfig": {"type": "object", "description":
                       "InstanceType (required), InstanceCount (1), VolumeSizeInGB (30), …"},
    "StoppingCondition": {"type": "object", "description":
                          "MaxRuntimeInSeconds (default 86400), MaxWaitTimeInSeconds"},
    "OutputDataConfig": {"type": "object", "description":
                         "S3OutputPath (default: the queue's s3_output_path), KmsKeyId"},
    "InputDataConfig": {"type": "array", "items": {"type": "object"}},
    "HyperParameters": {"type": "object", "additionalProperties": {"type": "string"}},
    "Environment": {**_ENV, "description": "Extra environment variables (values up to 512 "
                                           "characters)"},
    "Tags": {"type": "array", "items": {"type": "object"}},
    "VpcConfig": {"type": "object"},
    "EnableNetworkIsolation": {"type": "boolean"},
    "EnableInterContainerTrafficEncryption": {"type": "boolean"},
    "EnableManagedSpotTraining": {"type": "boolean"},
    "CheckpointConfig": {"type": "object"},
    "DebugHookConfig": {"type": "object"},
    "DebugRuleConfigurations": {"type": "array", "items": {"type": "object"}},
    "TensorBoardOutputConfig": {"type": "object"},
    "ExperimentConfig": {"type": "object"},
    "ProfilerConfig": {"type": "object"},
    "ProfilerRuleConfigurations": {"type": "array", "items": {"type": "object"}},
    "RetryStrategy": {"type": "object"},
    "RemoteDebugConfig": {"type": "object"},
    "InfraCheckConfig": {"type": "object"},
    "SessionChainingConfig": {"type": "object"},
}


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


SAGEMAKER: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        **_SAGEMAKER_PARAMS,
        **{_snake(k): v for k, v in _SAGEMAKER_PARAMS.items()},
        "env": _ENV,
    },
}

# W&B Launch's Vertex AI resource args: `spec` is the custom job, `run` how it runs
# (keys in snake_case, as the Python SDK spells them, or the REST API's camelCase).
# launch-tui fills in each pool's image, command and environment and the run's
# labels; backends/vertex_rules.py checks the rest. Project and location are the
# queue's (`project`, `location`), not resource args.
_VERTEX_POOL: dict[str, Any] = {
    "type": "object",
    "description": "A worker pool: machine_spec, replica_count, container_spec, disk_spec",
    "properties": {
        "machine_spec": {"type": "object", "description":
                         "machine_type (default n1-standard-4), accelerator_type, "
                         "accelerator_count"},
        "replica_count": {"type": "integer", "minimum": 0},
        "container_spec": {"type": "object", "description":
                           "image_uri (default: the run's image), command (default: the "
                           "job's entrypoint), args, env"},
        "disk_spec": {"type": "object", "description": "boot_disk_type, boot_disk_size_gb"},
    },
}
VERTEX: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "spec": {
            "type": "object",
            "description": "The custom job: worker_pool_specs, staging_bucket, "
                           "base_output_dir, encryption_spec_key_name, labels",
            "properties": {
                "worker_pool_specs": {"type": "array", "minItems": 1, "items": _VERTEX_POOL},
                "staging_bucket": {"type": "string", "pattern": r"^gs://.+",
                                   "description": "Where the job's output goes "
                                                  "(gs://BUCKET), unless base_output_dir"},
                "base_output_dir": {"type": "string", "pattern": r"^gs://.+"},
                "encryption_spec_key_name": {"type": "string", "description":
                                             "A Cloud KMS key name"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "run": {
            "type": "object",
            "description": "How it runs: timeout, service_account, network, "
                           "restart_job_on_worker_restart, enable_web_access",
            "properties": {
                "timeout": {"anyOf": [{"type": "number", "exclusiveMinimum": 0},
                                      {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?s$"}],
                            "description": "Seconds (or \"3600s\") before Vertex stops the job"},
                "service_account": {"type": "string"},
                "network": {"type": "string"},
                "restart_job_on_worker_restart": {"type": "boolean"},
                "enable_web_access": {"type": "boolean"},
            },
        },
    },
}
