"""The run's Job as launch-tui writes it, and what a kubernetes queue refuses.

Pure function tests (no API server): names, the merge of the queue's partial
Job with the run, secrets kept out of the spec, and each refusal's sentence.
The same rules run through the real agent and client in test_kubernetes_agent.py.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from launch_tui.backends import kubernetes_manifest as km
from launch_tui.core.errors import ValidationError
from launch_tui.core.model import JobKind, RunSpec

DNS = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def spec(*, job: str = "train", run_id: str = "r0123456789abcde",
         args: dict[str, Any] | None = None, queue_config: dict[str, Any] | None = None,
         env: dict[str, str] | None = None) -> RunSpec:
    return RunSpec(
        run_id=run_id, project="proj", queue="gpu-queue", resource="kubernetes", job=job,
        version=0, kind=JobKind.IMAGE, entrypoint=("python", "train.py"), config={},
        resource_args=args or {}, env=env or {"WANDB_RUN_ID": run_id}, source={},
        environment={}, job_digest="d", queue_config=queue_config or {},
    )


def test_names_of_100_characters_become_valid_dns_labels() -> None:
    long = "A_Very.Long/Job name " * 5  # 105 characters of what DNS-1123 refuses
    name = km.job_name(spec(job=long))
    assert len(name) <= 63 and DNS.match(name), name
    assert name.endswith("-r0123456789abcde")  # the run id is kept whole
    # Two long names that differ only past the cut stay apart.
    other = km.job_name(spec(job=long + "x"))
    assert other != name and len(other) <= 63
    assert km.label_value("Q" * 100 + "--") == "Q" * 63
    assert km.label_value("-my queue!-") == "my-queue"


def test_partial_job_is_merged_with_the_run() -> None:
    args = {
        "metadata": {"labels": {"team": "vision"}, "annotations": {"a": "b"}},
        "spec": {"backoffLimit": 2, "template": {"spec": {
            "containers": [{"name": "trainer", "image": "ignored", "args": ["--x"],
                            "env": [{"name": "KEEP", "value": "1"},
                                    {"name": "WANDB_RUN_ID", "value": "stale"}]},
                           {"name": "sidecar", "image": "busybox"}],
            "tolerations": [{"key": "gpu", "operator": "Exists"}],
        }}},
        "cpu": "500m", "memory": "2Gi", "gpus": 1, "node_selector": {"pool": "a100"},
    }
    job = km.build_job(spec(args=args), "reg.example/x:1", agent="agent-1", secret_ref=None)
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert job["metadata"]["annotations"] == {"a": "b"}
    labels = job["metadata"]["labels"]
    assert labels["team"] == "vision"
    assert labels[km.LABEL_RUN] == "r0123456789abcde"
    assert labels[km.LABEL_QUEUE] == "gpu-queue"
    assert labels[km.LABEL_AGENT] == "agent-1"
    assert job["spec"]["backoffLimit"] == 2  # set by the queue: kept
    assert job["spec"]["ttlSecondsAfterFinished"] == km.DEFAULT_TTL_S
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["template"]["metadata"]["labels"][km.LABEL_RUN] == "r0123456789abcde"
    assert pod["restartPolicy"] == "Never"
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    assert pod["nodeSelector"] == {"pool": "a100"}
    main, sidecar = pod["containers"]
    assert sidecar == {"name": "sidecar", "image": "busybox"}
    assert main["name"] == "trainer" and main["image"] == "reg.example/x:1"
    assert main["command"] == ["python", "train.py"] and "args" not in main
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env == {"KEEP": "1", "WANDB_RUN_ID": "r0123456789abcde"}
    assert main["resources"] == {"requests": {"cpu": "500m", "memory": "2Gi"},
                                 "limits": {"memory": "2Gi", "nvidia.com/gpu": 1}}


def test_bare_pod_spec_and_defaults() -> None:
    job = km.build_job(spec(args={"spec": {"serviceAccountName": "trainer"}}), "img:1",
                       agent=None, secret_ref=None)
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "trainer"
    assert pod["containers"][0]["name"] == km.MAIN_CONTAINER


def test_secret_values_go_to_a_secret_not_the_job() -> None:
    s = spec(env={"WANDB_API_KEY": "k-123", "HF_HUB_TOKEN": "t-9", "PLAIN": "p",
                  "MY_VAR": "listed"}, queue_config={"secret_env": ["MY_VAR"]})
    plain, secret = km.split_env(km.run_env(s), ("MY_VAR",))
    assert plain == {"PLAIN": "p"}
    assert set(secret) == {"WANDB_API_KEY", "HF_HUB_TOKEN", "MY_VAR"}
    name = km.secret_name_for(s.run_id)
    job = km.build_job(s, "img:1", agent=None, secret_ref=name)
    text = repr(job)
    for value in ("k-123", "t-9", "listed"):
        assert value not in text
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": name,
                                                                 "key": "WANDB_API_KEY"}
    body = km.env_secret(s, name, secret)
    assert body["metadata"]["labels"][km.LABEL_CREATED_BY] == "launch-tui"
    assert base64.b64decode(body["data"]["WANDB_API_KEY"]).decode() == "k-123"


def _refusal(args: dict[str, Any], config: dict[str, Any] | None = None) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        km.check_kubernetes_args(args, config or {}, queue="gpu")
    return info.value


RULE = "which queue 'gpu' does not allow (set allow_privileged: true in its config)."


@pytest.mark.parametrize(("pod", "field", "words"), [
    ({"containers": [{"securityContext": {"privileged": True}}]},
     "spec.template.spec.containers[0].securityContext.privileged",
     "a privileged container controls the node, "),
    ({"hostNetwork": True}, "spec.template.spec.hostNetwork",
     "sharing the node's network namespace reaches outside the pod, "),
    ({"hostPID": True}, "spec.template.spec.hostPID",
     "sharing the node's pid namespace reaches outside the pod, "),
    ({"hostIPC": True}, "spec.template.spec.hostIPC",
     "sharing the node's ipc namespace reaches outside the pod, "),
    ({"volumes": [{"name": "v", "emptyDir": {}}, {"name": "h", "hostPath": {"path": "/"}}]},
     "spec.template.spec.volumes[1].hostPath", "mounting a path of the node is "),
    ({"initContainers": [{"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}]},
     "spec.template.spec.initContainers[0].securityContext.capabilities.add",
     "added capabilities reach past the container, "),
])
def test_node_reaching_specs_are_refused(pod: dict[str, Any], field: str, words: str) -> None:
    err = _refusal({"spec": {"template": {"spec": pod}}})
    assert str(err) == f"resource_args.{field}: {words}{RULE}"
    assert err.field == f"resource_args.{field}"
    # The queue's explicit consent lets it through; a string "true" does not.
    km.check_kubernetes_args({"spec": {"template": {"spec": pod}}}, {"allow_privileged": True})
    _refusal({"spec": {"template": {"spec": pod}}}, {"allow_privileged": "true"})


def test_bare_pod_spec_refusal_names_its_own_path() -> None:
    err = _refusal({"spec": {"hostNetwork": True}})
    assert str(err).startswith("resource_args.spec.hostNetwork: ")


@pytest.mark.parametrize(("config", "sentence"), [
    ({"builder": {"destination": "Not A Registry"}},
     "builder.destination: 'Not A Registry' is not a registry repository (expected "
     "host[:port]/path, lower case)."),
    ({"builder": {"dest": "x"}}, "builder: must be a mapping with one key, destination (the "
     "registry repository images are pushed to, e.g. registry.example.com/team/launch)."),
    ({"namespace": "Team_A"}, "namespace: 'Team_A' is not a valid namespace name (lower-case "
     "letters, digits and '-', at most 63)."),
    ({"image_pull_grace_s": 0}, "image_pull_grace_s: must be a number of seconds above 0 "
     "(not 0)."),
])
def test_queue_keys_are_checked(config: dict[str, Any], sentence: str) -> None:
    assert str(_refusal({}, config)) == sentence


def test_other_kinds_are_refused() -> None:
    assert str(_refusal({"kind": "Deployment"})) == (
        "resource_args.kind: a kubernetes queue runs batch/v1 Jobs (not 'Deployment').")
