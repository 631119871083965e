"""The stand-in API and harness kubelet, exercised with the real `kubernetes` client:
if these hold, a backend test failing against them points at the backend."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from tests.kube.behaviours import (
    After,
    DeadlineExceeded,
    Evicted,
    Fail,
    ImagePullBackOff,
    OOMKilled,
    Preempted,
    RunForever,
    RunInDocker,
    Succeed,
    Unschedulable,
)
from tests.kube.fixtures import Kube

NS = "default"


@pytest.fixture
def api(kube: Kube) -> Iterator[client.ApiClient]:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kube.kubeconfig), client_configuration=cfg,
                            persist_config=False)
    with client.ApiClient(cfg) as c:
        yield c


def wait_for(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {check}")
        time.sleep(0.02)


def job(name: str, image: str = "standin/none:1", **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": image}
    container.update(spec.pop("container", {}))
    return {"metadata": {"name": name, "labels": {"run": name}},
            "spec": {"backoffLimit": 0, **spec, "template": {
                "metadata": {"labels": {"run": name}},
                "spec": {"containers": [container], "restartPolicy": "Never"}}}}


def conditions(obj: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in ((obj or {}).get("status") or {}).get("conditions") or []}


def finished(kube: Kube, name: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        j = kube.server.get("jobs", NS, name)
        c = conditions(j)
        return j if {"Complete", "Failed"} & {t for t in c if c[t]["status"] == "True"} \
            else None
    return wait_for(done)


def pods_of(kube: Kube, name: str) -> list[dict[str, Any]]:
    return kube.server.list("pods", NS, f"job-name={name}")


# ------------------------------------------------------------------ the API


def test_create_get_list_with_label_selectors(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    for name, labels in [("a", {"app": "x", "tier": "1"}), ("b", {"app": "y"}), ("c", {})]:
        core.create_namespaced_secret(NS, {"metadata": {"name": name, "labels": labels},
                                           "stringData": {"k": name}})
    got = core.read_namespaced_secret("a", NS)
    assert got.metadata.uid and got.metadata.creation_timestamp
    assert got.data == {"k": "YQ=="}  # stringData is folded into data, as the API does

    def names(**kw: Any) -> list[str]:
        return [s.metadata.name for s in core.list_namespaced_secret(NS, **kw).items]

    assert names(label_selector="app=x") == ["a"]
    assert names(label_selector="app!=x") == ["b", "c"]
    assert names(label_selector="app") == ["a", "b"]
    assert names(label_selector="!app") == ["c"]
    assert names(label_selector="app in (x,y),tier") == ["a"]
    assert names(field_selector="metadata.name=b") == ["b"]
    listed = core.list_namespaced_secret(NS)
    assert int(listed.metadata.resource_version) >= 3
    assert names() == ["a", "b", "c"]
    assert client.CoreV1Api(api).list_namespaced_secret("team-b").items == []


def test_conflicts_and_missing_objects_are_status_errors(api: client.ApiClient) -> None:
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job(NS, job("dup"))
    with pytest.raises(ApiException) as exc:
        batch.create_namespaced_job(NS, job("dup"))
    assert exc.value.status == 409
    body = json.loads(exc.value.body)
    assert (body["kind"], body["reason"]) == ("Status", "AlreadyExists")
    assert body["message"] == 'jobs.batch "dup" already exists'
    with pytest.raises(ApiException) as exc:
        client.CoreV1Api(api).read_namespaced_pod("nope", NS)
    assert exc.value.status == 404
    assert json.loads(exc.value.body)["reason"] == "NotFound"


def test_generate_name_and_metadata(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    made = [core.create_namespaced_secret(NS, {"metadata": {"generateName": "run-"}})
            for _ in range(2)]
    names = {m.metadata.name for m in made}
    assert len(names) == 2 and all(n.startswith("run-") and len(n) == 9 for n in names)
    rvs = [int(m.metadata.resource_version) for m in made]
    assert rvs[1] > rvs[0]
    assert made[0].metadata.namespace == NS


def test_patch_flavours(api: client.ApiClient, kube: Kube) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(NS, {"metadata": {"name": "p", "labels": {"a": "1"}}})
    core.patch_namespaced_secret("p", NS, {"metadata": {"labels": {"b": "2"}}})
    core.patch_namespaced_secret("p", NS, [{"op": "remove", "path": "/metadata/labels/a"}])
    assert kube.server.get("secrets", NS, "p")["metadata"]["labels"] == {"b": "2"}


def test_watch_resumes_from_a_version_and_times_out(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(NS, {"metadata": {"name": "before"}})
    version = core.list_namespaced_secret(NS).metadata.resource_version
    core.create_namespaced_secret(NS, {"metadata": {"name": "after", "labels": {"w": "1"}}})
    core.patch_namespaced_secret("after", NS, {"metadata": {"annotations": {"x": "y"}}})
    core.delete_namespaced_secret("after", NS)
    started = time.monotonic()
    events = [(e["type"], e["object"].metadata.name) for e in watch.Watch().stream(
        core.list_namespaced_secret, NS, resource_version=version, timeout_seconds=1)]
    assert 0.9 < time.monotonic() - started < 5
    assert events == [("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "after")]

    # Without a version, a watch starts with every object as ADDED; selectors apply.
    events = [(e["type"], e["object"].metadata.name) for e in watch.Watch().stream(
        core.list_namespaced_secret, NS, timeout_seconds=1)]
    assert events == [("ADDED", "before")]
    events = [e["type"] for e in watch.Watch().stream(
        core.list_namespaced_secret, NS, label_selector="w=1", resource_version=version,
        timeout_seconds=1)]
    assert events == ["ADDED", "MODIFIED", "DELETED"]


def test_watch_sees_live_events_and_bookmarks(api: client.ApiClient, kube: Kube) -> None:
    core = client.CoreV1Api(api)
    version = core.list_namespaced_pod(NS).metadata.resource_version
    resp = core.list_namespaced_pod(NS, watch=True, resource_version=version, timeout_seconds=2,
                                    allow_watch_bookmarks=True, _preload_content=False)
    threading.Timer(0.3, lambda: kube.server.create(
        "pods", NS, {"metadata": {"name": "live"}, "spec": {"containers": []}})).start()
    events = [json.loads(line) for line in iter_resp_lines(resp) if line]
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[0]["object"]["metadata"]["namespace"] == NS
    assert int(events[1]["object"]["metadata"]["resourceVersion"]) >= int(
        events[0]["object"]["metadata"]["resourceVersion"])


def test_watch_from_an_expired_version_is_410_gone(api: client.ApiClient, kube: Kube) -> None:
    core = client.CoreV1Api(api)
    version = core.list_namespaced_secret(NS).metadata.resource_version
    core.create_namespaced_secret(NS, {"metadata": {"name": "s"}})
    kube.server.expire_history()
    resp = core.list_namespaced_secret(NS, watch=True, resource_version=version,
                                       timeout_seconds=5, _preload_content=False)
    events = [json.loads(line) for line in iter_resp_lines(resp) if line]
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    assert (events[0]["object"]["kind"], events[0]["object"]["code"],
            events[0]["object"]["reason"]) == ("Status", 410, "Expired")
    with pytest.raises(ApiException) as exc:
        list(watch.Watch().stream(core.list_namespaced_secret, NS, resource_version=version,
                                  timeout_seconds=5))
    assert exc.value.status == 410
    # a fresh list's version watches fine
    fresh = core.list_namespaced_secret(NS).metadata.resource_version
    assert list(watch.Watch().stream(core.list_namespaced_secret, NS, resource_version=fresh,
                                     timeout_seconds=1)) == []


def test_foreground_delete_removes_the_jobs_pods(api: client.ApiClient, kube: Kube) -> None:
    kube.kubelet.behaviour = lambda j: RunForever(["up"])
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    batch.create_namespaced_job(NS, job("fg", parallelism=2))
    wait_for(lambda: len(pods_of(kube, "fg")) == 2 and all(
        p["status"]["phase"] == "Running" for p in pods_of(kube, "fg")))
    version = core.list_namespaced_pod(NS).metadata.resource_version
    batch.delete_namespaced_job("fg", NS, propagation_policy="Foreground")
    assert pods_of(kube, "fg") == [] and kube.server.get("jobs", NS, "fg") is None
    events = [(e["type"], e["object"].metadata.name) for e in watch.Watch().stream(
        core.list_namespaced_pod, NS, resource_version=version, timeout_seconds=1)]
    assert sorted(t for t, _ in events) == ["DELETED", "DELETED"]


def test_delete_without_a_policy_orphans_a_jobs_pods(api: client.ApiClient,
                                                     kube: Kube) -> None:
    kube.kubelet.behaviour = lambda j: RunForever()
    client.BatchV1Api(api).create_namespaced_job(NS, job("orphan"))
    wait_for(lambda: pods_of(kube, "orphan"))
    client.BatchV1Api(api).delete_namespaced_job("orphan", NS)
    (pod,) = pods_of(kube, "orphan")
    assert pod["metadata"]["ownerReferences"] == []


def test_requests_are_recorded_as_kube_verbs(api: client.ApiClient, kube: Kube) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(NS, {"metadata": {"name": "s"}})
    core.read_namespaced_secret("s", NS)
    core.list_namespaced_secret(NS)
    list(watch.Watch().stream(core.list_namespaced_secret, NS, timeout_seconds=1))
    core.patch_namespaced_secret("s", NS, {"metadata": {"labels": {"a": "b"}}})
    core.delete_namespaced_secret("s", NS)
    core.delete_collection_namespaced_secret(NS)
    with pytest.raises(ApiException):
        core.read_namespaced_pod_log("nope", NS)
    assert kube.server.requests == [
        ("create", "", "secrets", ""), ("get", "", "secrets", ""),
        ("list", "", "secrets", ""), ("watch", "", "secrets", ""),
        ("patch", "", "secrets", ""), ("delete", "", "secrets", ""),
        ("deletecollection", "", "secrets", ""), ("get", "", "pods", "log")]


# ------------------------------------------------------------------ pod logs


def test_pod_log_follow_streams_until_the_container_ends(api: client.ApiClient,
                                                        kube: Kube) -> None:
    kube.kubelet.behaviour = lambda j: Succeed([f"line {i}" for i in range(5)],
                                               line_pause_s=0.2)
    core = client.CoreV1Api(api)
    client.BatchV1Api(api).create_namespaced_job(NS, job("logs"))
    pod = wait_for(lambda: [p for p in pods_of(kube, "logs")
                            if p["status"]["phase"] == "Running"])[0]["metadata"]["name"]
    resp = core.read_namespaced_pod_log(pod, NS, container="main", follow=True,
                                        timestamps=True, _preload_content=False)
    got, arrival = [], []
    for line in iter_resp_lines(resp):
        got.append(line)
        arrival.append(time.monotonic())
    assert [g.split(" ", 1)[1] for g in got] == [f"line {i}" for i in range(5)]
    stamp = got[0].split(" ", 1)[0]
    assert len(stamp) == len("2026-11-23T10:00:00.123456789Z") and stamp.endswith("Z")
    assert arrival[-1] - arrival[0] > 0.5  # streamed as produced, not at the end
    assert kube.server.get("pods", NS, pod)["status"]["phase"] == "Succeeded"

    # after the fact: tailLines, sinceTime, plain text
    text = core.read_namespaced_pod_log(pod, NS, tail_lines=2,
                                        _preload_content=False).data.decode()
    assert text == "line 3\nline 4\n"
    # (the Python client has no sinceTime parameter; kubectl and others send it)
    since = urllib.parse.quote(got[2].split(" ", 1)[0])
    url = f"{kube.server.url}/api/v1/namespaces/{NS}/pods/{pod}/log?sinceTime={since}"
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.read().decode().splitlines() == ["line 2", "line 3", "line 4"]


def test_pod_log_errors(api: client.ApiClient, kube: Kube) -> None:
    core = client.CoreV1Api(api)
    kube.kubelet.behaviour = lambda j: ImagePullBackOff()
    client.BatchV1Api(api).create_namespaced_job(NS, job("pull"))
    pod = wait_for(lambda: pods_of(kube, "pull"))[0]["metadata"]["name"]
    wait_for(lambda: kube.server.get("pods", NS, pod)["status"].get("containerStatuses"))
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_pod_log(pod, NS, _preload_content=False)
    assert exc.value.status == 400
    assert "is waiting to start: trying and failing to pull image" in exc.value.body.decode() \
        if isinstance(exc.value.body, bytes) else exc.value.body
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_pod_log("nope", NS, _preload_content=False)
    assert exc.value.status == 404


# ------------------------------------------------------------------ behaviours


def test_succeed_completes_the_job(api: client.ApiClient, kube: Kube) -> None:
    kube.kubelet.behaviour = lambda j: Succeed(["hi"])
    client.BatchV1Api(api).create_namespaced_job(NS, job("ok"))
    j = finished(kube, "ok")
    c = conditions(j)
    assert c["Complete"]["status"] == "True" and "SuccessCriteriaMet" in c
    assert j["status"]["succeeded"] == 1 and "active" not in j["status"]
    assert j["status"]["startTime"] and j["status"]["completionTime"]
    (pod,) = pods_of(kube, "ok")
    assert pod["metadata"]["name"].startswith("ok-") and len(pod["metadata"]["name"]) == 8
    assert pod["metadata"]["ownerReferences"][0]["uid"] == j["metadata"]["uid"]
    assert pod["metadata"]["labels"]["controller-uid"] == j["metadata"]["uid"]
    assert pod["metadata"]["labels"]["run"] == "ok"  # from the template
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (pod["status"]["phase"], term["exitCode"], term["reason"]) == (
        "Succeeded", 0, "Completed")


@pytest.mark.parametrize(("behaviour", "code", "reason"), [
    (Fail(3, ["boom"]), 3, "Error"),
    (OOMKilled(), 137, "OOMKilled"),
])
def test_failing_containers_fail_the_job(api: client.ApiClient, kube: Kube, behaviour: Any,
                                         code: int, reason: str) -> None:
    kube.kubelet.behaviour = lambda j: behaviour
    client.BatchV1Api(api).create_namespaced_job(NS, job("bad"))
    j = finished(kube, "bad")
    assert conditions(j)["Failed"]["reason"] == "BackoffLimitExceeded"
    assert conditions(j)["FailureTarget"]["status"] == "True"
    assert j["status"]["failed"] == 1
    (pod,) = pods_of(kube, "bad")
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (pod["status"]["phase"], term["exitCode"], term["reason"]) == ("Failed", code, reason)


def test_backoff_limit_retries_with_new_pods(api: client.ApiClient, kube: Kube) -> None:
    kube.kubelet.behaviour = lambda j: Fail(1)
    client.BatchV1Api(api).create_namespaced_job(NS, job("retry", backoffLimit=2))
    j = finished(kube, "retry")
    assert j["status"]["failed"] == 3 and len(pods_of(kube, "retry")) == 3


def test_unschedulable_stays_pending(api: client.ApiClient, kube: Kube) -> None:
    kube.kubelet.behaviour = lambda j: Unschedulable()
    client.BatchV1Api(api).create_namespaced_job(NS, job("gpu"))
    pod = wait_for(lambda: [p for p in pods_of(kube, "gpu") if conditions(p)])[0]
    c = conditions(pod)["PodScheduled"]
    assert (pod["status"]["phase"], c["status"], c["reason"]) == (
        "Pending", "False", "Unschedulable")
    assert c["message"] == "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    assert kube.server.get("jobs", NS, "gpu")["status"]["active"] == 1
    events = kube.server.list("events", NS)
    assert any(e["reason"] == "FailedScheduling" for e in events)


def test_unschedulable_then_running(api: client.ApiClient, kube: Kube) -> None:
    kube.kubelet.behaviour = lambda j: After(Unschedulable(), 0.3, Succeed(["late"]))
    client.BatchV1Api(api).create_namespaced_job(NS, job("later"))
    wait_for(lambda: [p for p in pods_of(kube, "later") if conditions(p)])
    j = finished(kube, "later")
    assert conditions(j)["Complete"]["status"] == "True"


def test_image_pull_backoff(api: client.ApiClient, kube: Kube) -> None:
    kube.kubelet.behaviour = lambda j: ImagePullBackOff("manifest unknown")
    client.BatchV1Api(api).create_namespaced_job(NS, job("pull", image="reg/x:1"))

    def waiting() -> dict[str, Any] | None:
        pods = pods_of(kube, "pull")
        statuses = pods[0]["status"].get("containerStatuses") if pods else None
        state = statuses[0]["state"] if statuses else {}
        return state.get("waiting") if state.get("waiting", {}).get(
            "reason") == "ImagePullBackOff" else None
    w = wait_for(waiting)
    assert w["message"] == 'Back-off pulling image "reg/x:1": ErrImagePull: manifest unknown'
    assert pods_of(kube, "pull")[0]["status"]["phase"] == "Pending"


def test_deadline_exceeded(api: client.ApiClient, kube: Kube) -> None:
    kube.kubelet.behaviour = lambda j: DeadlineExceeded(["tick"], after_s=0.2)
    client.BatchV1Api(api).create_namespaced_job(NS, job("slow", activeDeadlineSeconds=1))
    j = finished(kube, "slow")
    assert conditions(j)["Failed"]["reason"] == "DeadlineExceeded"
    assert pods_of(kube, "slow") == []


@pytest.mark.parametrize(("behaviour", "why"), [
    (Evicted(), "EvictionByEvictionAPI"), (Preempted(), "PreemptionByScheduler")])
@pytest.mark.parametrize(("policy", "job_reason"), [
    (None, "BackoffLimitExceeded"),
    ({"rules": [{"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
     "PodFailurePolicy"),
])
def test_disruptions(api: client.ApiClient, kube: Kube, behaviour: Any, why: str,
                     policy: dict[str, Any] | None, job_reason: str) -> None:
    kube.kubelet.behaviour = lambda j: behaviour
    spec = {"podFailurePolicy": policy} if policy else {}
    client.BatchV1Api(api).create_namespaced_job(NS, job("gone", **spec))
    j = finished(kube, "gone")
    assert conditions(j)["Failed"]["reason"] == job_reason
    (pod,) = pods_of(kube, "gone")
    d = conditions(pod)["DisruptionTarget"]
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (d["status"], d["reason"], pod["status"]["phase"], term["exitCode"]) == (
        "True", why, "Failed", 143)


def test_ignored_disruption_gets_a_new_pod(api: client.ApiClient, kube: Kube) -> None:
    kube.kubelet.behaviour = lambda j: Evicted(times=1)
    policy = {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}
    client.BatchV1Api(api).create_namespaced_job(NS, job("again", podFailurePolicy=policy))
    j = finished(kube, "again")
    assert conditions(j)["Complete"]["status"] == "True" and "failed" not in j["status"]
    assert len(pods_of(kube, "again")) == 2


def test_expire_finished_deletes_jobs_with_a_ttl(api: client.ApiClient, kube: Kube) -> None:
    kube.kubelet.behaviour = lambda j: Succeed()
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job(NS, job("ttl", ttlSecondsAfterFinished=60))
    batch.create_namespaced_job(NS, job("keep"))
    finished(kube, "ttl")
    finished(kube, "keep")
    assert kube.kubelet.expire_finished() == ["ttl"]
    assert kube.server.get("jobs", NS, "ttl") is None and pods_of(kube, "ttl") == []
    assert kube.server.get("jobs", NS, "keep") is not None


def test_patch_status_emits_modified(api: client.ApiClient, kube: Kube) -> None:
    core = client.CoreV1Api(api)
    kube.server.create("pods", NS, {"metadata": {"name": "p"}, "spec": {"containers": []}})
    version = core.list_namespaced_pod(NS).metadata.resource_version
    kube.server.patch_status("pods", NS, "p", {"phase": "Running"})
    events = list(watch.Watch().stream(core.list_namespaced_pod, NS, resource_version=version,
                                       timeout_seconds=1))
    assert [(e["type"], e["object"].status.phase) for e in events] == [("MODIFIED", "Running")]


def test_other_context_uses_its_namespace(kube: Kube) -> None:
    contexts, _ = config.list_kube_config_contexts(config_file=str(kube.kubeconfig))
    assert {c["name"]: c["context"]["namespace"] for c in contexts} == {
        "standin": "default", "other": "team-b"}
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kube.kubeconfig), context="other",
                            client_configuration=cfg, persist_config=False)
    assert cfg.host == kube.server.url and cfg.host.startswith("http://127.0.0.1:")


# ------------------------------------------------------------------ for real


@pytest.mark.docker
def test_run_in_docker_resolves_secret_refs(api: client.ApiClient, kube: Kube) -> None:
    image = os.environ["LAUNCH_TUI_TEST_BASE_IMAGE"]
    kube.kubelet.behaviour = lambda j: RunInDocker()
    core = client.CoreV1Api(api)
    env = [{"name": "PLAIN", "value": "p"},
           {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}]
    code = "import os; print(os.environ['PLAIN']); print(os.environ['TOKEN'])"
    client.BatchV1Api(api).create_namespaced_job(NS, job(
        "real", image=image, container={"command": ["python3", "-c", code], "env": env}))

    def waiting_reason() -> str | None:
        pods = pods_of(kube, "real")
        cs = pods[0]["status"].get("containerStatuses") if pods else None
        return ((cs or [{}])[0].get("state") or {}).get("waiting", {}).get("reason")
    # no Secret yet: the kubelet cannot configure the container, and retries
    assert wait_for(lambda: waiting_reason() == "CreateContainerConfigError", 60)
    core.create_namespaced_secret(NS, {"metadata": {"name": "creds"},
                                       "stringData": {"token": "s3cret"}})
    j = wait_for(lambda: finished(kube, "real"), 60)
    assert conditions(j)["Complete"]["status"] == "True"
    (pod,) = pods_of(kube, "real")
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (0, "Completed")
    text = core.read_namespaced_pod_log(pod["metadata"]["name"], NS,
                                        _preload_content=False).data.decode()
    assert text == "p\ns3cret\n"


@pytest.mark.docker
def test_run_in_docker_failure_exit_code(api: client.ApiClient, kube: Kube) -> None:
    image = os.environ["LAUNCH_TUI_TEST_BASE_IMAGE"]
    client.BatchV1Api(api).create_namespaced_job(NS, job(
        "exit", image=image, container={"command": ["python3", "-c", "raise SystemExit(7)"]}))
    j = wait_for(lambda: finished(kube, "exit"), 60)
    assert conditions(j)["Failed"]["reason"] == "BackoffLimitExceeded"
    term = pods_of(kube, "exit")[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (7, "Error")


# ------------------------------------------------------------------ kubectl

MANIFEST = """\
apiVersion: v1
kind: ServiceAccount
metadata: {name: launcher}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: launcher}
rules:
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "list", "watch", "delete"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: launcher}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: launcher}
subjects: [{kind: ServiceAccount, name: launcher}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: agent:1}]}
---
apiVersion: v1
kind: Secret
metadata: {name: agent-env}
stringData: {TOKEN: x}
"""


def test_kubectl_apply_dry_run(kube: Kube, tmp_path: Any) -> None:
    """kubectl (Debian's kubernetes-client, installed by scripts/test-services.sh and
    .ci/run) talks to the stand-in: discovery, then one GET per object."""
    kubectl = os.environ.get("LAUNCH_TUI_TEST_KUBECTL") or shutil.which("kubectl")
    assert kubectl is not None, "no kubectl on PATH: install Debian's kubernetes-client"
    path = tmp_path / "m.yaml"
    path.write_text(MANIFEST)
    out = subprocess.run([kubectl, "--kubeconfig", str(kube.kubeconfig), "apply",
                          "--dry-run=client", "--validate=false", "-f", str(path)],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    for what in ["serviceaccount/launcher", "role.rbac.authorization.k8s.io/launcher",
                 "rolebinding.rbac.authorization.k8s.io/launcher", "deployment.apps/agent",
                 "secret/agent-env"]:
        assert f"{what} created (dry run)" in out.stdout


def test_deploy_manifests_pass_kubectl_apply_dry_run(kube: Kube, tmp_path: Any) -> None:
    """The repository's deploy/kubernetes, rendered by kubectl's kustomize and applied
    with --dry-run=client against the stand-in's discovery."""
    kubectl = os.environ.get("LAUNCH_TUI_TEST_KUBECTL") or shutil.which("kubectl")
    assert kubectl is not None, "no kubectl on PATH: install Debian's kubernetes-client"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "HOME": str(tmp_path)}
    rendered = subprocess.run([kubectl, "kustomize", str(root / "deploy" / "kubernetes")],
                              capture_output=True, text=True, timeout=60, env=env)
    assert rendered.returncode == 0, rendered.stderr
    path = tmp_path / "deploy.yaml"
    path.write_text(rendered.stdout)
    out = subprocess.run([kubectl, "--kubeconfig", str(kube.kubeconfig), "apply",
                          "--dry-run=client", "--validate=false", "-f", str(path)],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    for what in ["serviceaccount/launch-tui-agent", "role.rbac.authorization.k8s.io/"
                 "launch-tui-agent", "rolebinding.rbac.authorization.k8s.io/launch-tui-agent",
                 "deployment.apps/launch-tui-agent", "secret/launch-tui-store"]:
        assert f"{what} created (dry run)" in out.stdout, out.stdout
