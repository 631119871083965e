"""The run's Vertex AI custom job as launch-tui writes it, and what a vertex queue refuses.

Pure function tests (no SDK, no server): resource args in either spelling, the
run filled into every worker pool, labels, and each refusal's one sentence. The
same rules run through the real agent and client in tests/e2e/test_vertex_agent.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from launch_tui.backends import vertex_rules as vr
from launch_tui.core import registry, resolve
from launch_tui.core.errors import ValidationError
from launch_tui.core.model import JobKind, RunSpec

IMAGE = "us-docker.pkg.dev/p/r/train:1"
LABEL = re.compile(r"^[a-z0-9_-]{0,63}$")


def spec(*, args: dict[str, Any] | None = None, queue_config: dict[str, Any] | None = None,
         job: str = "train", run_id: str = "r0123456", env: dict[str, str] | None = None
         ) -> RunSpec:
    return RunSpec(
        run_id=run_id, project="My Project", queue="GPU.Queue", resource="vertex", job=job,
        version=0, kind=JobKind.IMAGE, entrypoint=("python", "train.py"), config={},
        resource_args={"spec": {"staging_bucket": "gs://b"}} if args is None else args,
        env={"WANDB_RUN_ID": run_id} if env is None else env, source={}, environment={},
        job_digest="d", queue_config={"project": "proj-123", "location": "us-central1",
                                      **(queue_config or {})},
    )


def refusal(args: dict[str, Any], config: dict[str, Any] | None = None) -> str:
    with pytest.raises(ValidationError) as err:
        vr.check_vertex_args(args, config or {}, "vq")
    return str(err.value)


def test_camel_case_keys_are_read_as_snake_case_but_labels_and_env_names_are_kept() -> None:
    args = {"spec": {"workerPoolSpecs": [{"machineSpec": {"machineType": "a2-highgpu-1g",
                                                          "acceleratorCount": 1},
                                          "replicaCount": 1,
                                          "containerSpec": {"env": {"myVar": "1"}}}],
                     "stagingBucket": "gs://b", "labels": {"team_name": "x"}},
            "run": {"restartJobOnWorkerRestart": True}}
    vr.check_vertex_args(args, {}, "vq")
    body = vr.custom_job_body(spec(args=args), IMAGE)
    pool = body["job_spec"]["worker_pool_specs"][0]
    assert pool["machine_spec"] == {"machine_type": "a2-highgpu-1g", "accelerator_count": 1}
    assert {"name": "myVar", "value": "1"} in pool["container_spec"]["env"]
    assert body["labels"]["team_name"] == "x"
    assert body["job_spec"]["scheduling"] == {"restart_job_on_worker_restart": True}


def test_every_pool_gets_the_run_env_and_pools_of_the_run_image_its_command() -> None:
    args = {"spec": {"staging_bucket": "gs://b", "worker_pool_specs": [
        {"container_spec": {"image_uri": "${image_uri}",
                            "env": [{"name": "WANDB_RUN_ID", "value": "old"},
                                    {"name": "KEEP", "value": "k"}]}},
        {"replica_count": 2},
        {"replica_count": 1, "container_spec": {"image_uri": "gcr.io/x/reducer:1",
                                                "command": ["reduce"]}},
    ]}}
    body = vr.custom_job_body(spec(args=resolve.fill_macros(args, {"image_uri": IMAGE})),
                              IMAGE)
    pools = body["job_spec"]["worker_pool_specs"]
    for pool in pools:
        env = {e["name"]: e["value"] for e in pool["container_spec"]["env"]}
        assert env["WANDB_RUN_ID"] == "r0123456"  # the run's value wins over the queue's
    assert pools[0]["container_spec"]["env"][0] == {"name": "KEEP", "value": "k"}
    assert pools[0]["container_spec"]["command"] == ["python", "train.py"]
    assert pools[1]["container_spec"]["image_uri"] == IMAGE
    assert pools[1]["container_spec"]["command"] == ["python", "train.py"]
    assert pools[1]["machine_spec"] == {"machine_type": vr.DEFAULT_MACHINE_TYPE}
    assert pools[2]["container_spec"]["image_uri"] == "gcr.io/x/reducer:1"
    assert pools[2]["container_spec"]["command"] == ["reduce"]  # its own image, its own command


def test_no_worker_pools_means_one_pool_of_the_run_image() -> None:
    body = vr.custom_job_body(spec(), IMAGE)
    assert body["job_spec"]["worker_pool_specs"] == [{
        "container_spec": {"image_uri": IMAGE, "command": ["python", "train.py"],
                           "env": [{"name": "WANDB_RUN_ID", "value": "r0123456"}]},
        "machine_spec": {"machine_type": vr.DEFAULT_MACHINE_TYPE}, "replica_count": 1}]
    assert body["job_spec"]["base_output_directory"] == {
        "output_uri_prefix": "gs://b/launch-tui/r0123456"}


def test_spec_and_run_options_reach_the_job() -> None:
    key = "projects/p/locations/us/keyRings/k/cryptoKeys/c"
    body = vr.custom_job_body(spec(args={
        "spec": {"base_output_dir": "gs://out/here", "encryption_spec_key_name": key,
                 "labels": {"team": "vision"}},
        "run": {"timeout": "7200s", "service_account": "sa@p.iam.gserviceaccount.com",
                "network": "projects/1/global/networks/n", "enable_web_access": True}}), IMAGE)
    job_spec = body["job_spec"]
    assert job_spec["base_output_directory"] == {"output_uri_prefix": "gs://out/here"}
    assert job_spec["scheduling"] == {"timeout": "7200s"}
    assert job_spec["service_account"] == "sa@p.iam.gserviceaccount.com"
    assert job_spec["network"] == "projects/1/global/networks/n"
    assert job_spec["enable_web_access"] is True
    assert body["encryption_spec"] == {"kms_key_name": key}
    assert body["labels"]["team"] == "vision"


def test_labels_carry_the_run_as_valid_label_values() -> None:
    body = vr.custom_job_body(spec(run_id="r0123456"), IMAGE)
    labels = body["labels"]
    assert labels[vr.LABEL_RUN] == "r0123456"
    assert labels[vr.LABEL_QUEUE] == "gpu-queue"
    assert labels[vr.LABEL_PROJECT] == "my-project"
    assert all(LABEL.match(v) for v in labels.values()), labels
    assert vr.run_filter("r0123456") == 'labels.launch-tui-run-id="r0123456"'
    assert vr.label_value("X" * 100) == "x" * 63


def test_the_display_name_is_the_job_and_run_id_within_128_characters() -> None:
    assert vr.display_name(spec(job="train")) == "train-r0123456"
    long = vr.display_name(spec(job="j" * 200))
    assert len(long) == 128 and long.endswith("-r0123456")


@pytest.mark.parametrize(("args", "config", "start"), [
    ({"machine_type": "n1"}, {}, "resource_args.machine_type: a vertex queue takes"),
    ({"spec": {"workerPoolSpecs": []}}, {}, "resource_args.spec.worker_pool_specs: must be"),
    ({"spec": {"worker_pool_specs": [{"replica_count": 0}]}}, {},
     "resource_args.spec.worker_pool_specs[0].replica_count"),
    ({"spec": {"worker_pool_specs": [{"python_package_spec": {}}]}}, {},
     "resource_args.spec.worker_pool_specs[0].python_package_spec"),
    ({"spec": {"worker_pool_specs": [{"container_spec": {"env": [{"name": "1A"}]}}]}}, {},
     "resource_args.spec.worker_pool_specs[0].container_spec.env[0]"),
    ({"spec": {"staging_bucket": "s3://b"}}, {}, "resource_args.spec.staging_bucket: must be"),
    ({"spec": {"labels": {"Team": "x"}}}, {}, "resource_args.spec.labels.Team"),
    ({"spec": {"labels": {"launch-tui-run-id": "x"}}}, {}, "resource_args.spec.labels."),
    ({"spec": {"unknown": 1}}, {}, "resource_args.spec.unknown: not a key"),
    ({"run": {"timeout": -1}}, {}, "resource_args.run.timeout: must be"),
    ({"run": {"timeout": "1h"}}, {}, "resource_args.run.timeout: must be"),
    ({"run": {"enable_web_access": "yes"}}, {}, "resource_args.run.enable_web_access"),
    ({}, {"project": "Bad Project"}, "project: 'Bad Project' is not a Google Cloud project"),
    ({}, {"location": "us central"}, "location: 'us central' is not a Google Cloud region"),
    ({}, {"builder": {"destination": "Not A Registry"}}, "builder.destination:"),
])
def test_what_a_queue_refuses_is_one_sentence_naming_the_field(
        args: dict[str, Any], config: dict[str, Any], start: str) -> None:
    message = refusal(args, config)
    assert message.startswith(start), message
    assert "\n" not in message and message.endswith("."), message


def test_a_missing_project_location_or_bucket_is_one_sentence() -> None:
    with pytest.raises(ValidationError, match=r"^project: queue 'GPU.Queue' names no Google "
                                              r"Cloud project"):
        vr.where(spec(queue_config={"project": None}), {})
    assert vr.where(spec(queue_config={"project": None}), {"project": "from-settings"}) == (
        "from-settings", "us-central1")
    with pytest.raises(ValidationError, match=r"^location: queue 'GPU.Queue' names no region"):
        vr.where(spec(queue_config={"location": ""}), {})
    with pytest.raises(ValidationError, match=r"^resource_args.spec.staging_bucket: the run "
                                              r"has no Cloud Storage bucket"):
        vr.custom_job_body(spec(args={"spec": {}}), IMAGE)


def test_queues_are_checked_through_the_plugin_without_the_sdk() -> None:
    plugin = registry.plugin("vertex")
    assert set(plugin.queue_keys) >= {"project", "location", "api_endpoint", "builder"}
    config = resolve.parse_queue_config("vertex", {
        "project": "proj-123", "location": "europe-west4",
        "resource_args": {"spec": {"staging_bucket": "gs://b",
                                   "worker_pool_specs": [{"machine_spec": {
                                       "machine_type": "{{machine}}"}}]},
                          "run": {"timeout": 3600}},
        "template_variables": {"machine": {"type": "string",
                                           "enum": ["n1-standard-4", "a2-highgpu-1g"]}},
    }, "vq")
    assert config.extra["project"] == "proj-123"
    with pytest.raises(ValidationError, match=r"resource_args\.run\.timeout"):
        resolve.parse_queue_config("vertex", {"resource_args": {"run": {"timeout": 0}}}, "vq")
