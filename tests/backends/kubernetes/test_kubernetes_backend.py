"""KubernetesBackend with the real client against the API stand-in (tests/kube).

The cluster's behaviour is scripted by the test kubelet (each test says which);
what is asserted is what the backend reports and what it leaves in the cluster.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest

from launch_tui.backends.kubernetes_backend import KubernetesBackend
from launch_tui.backends.kubernetes_manifest import LABEL_RUN
from launch_tui.core.backend import BackendContext, BuildResult, RunHandle, RunStatus
from launch_tui.core.model import JobKind, RunSpec, RunState
from tests.kube.behaviours import DeadlineExceeded, RunForever, Succeed
from tests.kube.fixtures import Kube


def spec(run_id: str, *, args: dict[str, Any] | None = None,
         queue_config: dict[str, Any] | None = None) -> RunSpec:
    return RunSpec(
        run_id=run_id, project="p", queue="q", resource="kubernetes", job="train", version=0,
        kind=JobKind.IMAGE, entrypoint=("python3", "-c", "pass"), config={},
        resource_args=args or {}, env={"WANDB_RUN_ID": run_id}, source={"image": "img:1"},
        environment={}, job_digest="d", queue_config=queue_config or {},
    )


def backend(kube: Kube, tmp_path: Path, **settings: Any) -> KubernetesBackend:
    return KubernetesBackend(BackendContext(
        home=tmp_path, artifacts=tmp_path / "a",
        settings={"kubeconfig": str(kube.kubeconfig), **settings}, agent="a1"))


async def until_terminal(b: KubernetesBackend, handle: RunHandle, within: float = 15
                         ) -> list[RunStatus]:
    seen: list[RunStatus] = []

    async def follow() -> None:
        async for status in b.watch(handle):
            seen.append(status)

    await asyncio.wait_for(follow(), within)
    return seen


async def test_namespace_follows_args_then_queue_then_context(kube: Kube, tmp_path: Path
                                                              ) -> None:
    """Cluster behaviour: pods run forever (only where the Jobs land matters)."""
    kube.kubelet.behaviour = lambda job: RunForever()
    b = backend(kube, tmp_path)
    cases = [
        (spec("r1", args={"namespace": "from-args"}, queue_config={"namespace": "from-q"}),
         "from-args"),
        (spec("r2", queue_config={"namespace": "from-q"}), "from-q"),
        (spec("r3", queue_config={"context": "other"}), "team-b"),  # the context's own
        (spec("r4"), "default"),
    ]
    for s, namespace in cases:
        handle = await b.submit(s, BuildResult(image="img:1"))
        assert handle.data["namespace"] == namespace
        assert kube.server.get("jobs", namespace, handle.data["job"]) is not None
        await b.cancel(handle, 0)


async def test_submit_is_idempotent_and_find_reattaches(kube: Kube, tmp_path: Path) -> None:
    kube.kubelet.behaviour = lambda job: RunForever()
    b = backend(kube, tmp_path)
    s = spec("r5", queue_config={"namespace": "ns1"})
    first = await b.submit(s, BuildResult(image="img:1"))
    second = await b.submit(s, BuildResult(image="img:1"))
    assert first == second
    assert len(kube.server.list("jobs", "ns1", label_selector=f"{LABEL_RUN}=r5")) == 1
    restarted = backend(kube, tmp_path)
    assert await restarted.find("r5", s) == first
    assert await restarted.find("r-none", s) is None
    await b.cancel(first, 0)


async def test_registry_credentials_reach_the_cluster_as_a_pull_secret(
    kube: Kube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube.kubelet.behaviour = lambda job: Succeed(lines=["hi"])
    monkeypatch.setenv("TEST_REGISTRY_TOKEN", "tok-987")
    b = backend(kube, tmp_path, registry={"username": "ci", "password_env": "TEST_REGISTRY_TOKEN",
                                          "destination": "reg.example.com/team"})
    handle = await b.submit(spec("r6"), BuildResult(image="reg.example.com/team/train:1"))
    job = kube.server.get("jobs", "default", handle.data["job"])
    assert job is not None and "tok-987" not in json.dumps(job)
    (pull,) = job["spec"]["template"]["spec"]["imagePullSecrets"]
    secret = kube.server.get("secrets", "default", pull["name"])
    assert secret is not None and secret["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert config["auths"]["reg.example.com"]["password"] == "tok-987"
    assert (await until_terminal(b, handle))[-1].state == RunState.FINISHED
    await b.cleanup(handle)
    assert kube.server.get("secrets", "default", pull["name"]) is None
    # An image from another registry gets no credentials of this one.
    other = await b.submit(spec("r7"), BuildResult(image="elsewhere.io/x:1"))
    job = kube.server.get("jobs", "default", other.data["job"])
    assert job is not None and "imagePullSecrets" not in job["spec"]["template"]["spec"]


async def test_watch_survives_expired_history_and_a_job_deleted_outside(
    kube: Kube, tmp_path: Path
) -> None:
    """Cluster behaviour: the pod runs until deleted; the API server's watch history is
    compacted while the backend watches (410 Gone), then someone deletes the Job."""
    kube.kubelet.behaviour = lambda job: RunForever(lines=["up"])
    b = backend(kube, tmp_path)
    handle = await b.submit(spec("r8"), BuildResult(image="img:1"))
    seen: list[RunStatus] = []

    async def follow() -> None:
        async for status in b.watch(handle):
            seen.append(status)

    task = asyncio.create_task(follow())
    for _ in range(100):
        if seen and seen[-1].state == RunState.RUNNING:
            break
        await asyncio.sleep(0.05)
    assert seen[-1].state == RunState.RUNNING
    kube.server.expire_history()
    kube.server.delete("jobs", "default", handle.data["job"], propagation="Foreground")
    await asyncio.wait_for(task, 15)
    assert seen[-1] == RunStatus(RunState.STOPPED,
                                 reason="its Kubernetes Job was deleted before it ended")


async def test_deadline_exceeded_fails_as_timed_out(kube: Kube, tmp_path: Path) -> None:
    """Cluster behaviour: the Job controller fails the Job at its activeDeadlineSeconds."""
    kube.kubelet.behaviour = lambda job: DeadlineExceeded(lines=["slow"], after_s=0.3)
    b = backend(kube, tmp_path)
    handle = await b.submit(spec("r9", args={"active_deadline_s": 1}),
                            BuildResult(image="img:1"))
    final = (await until_terminal(b, handle))[-1]
    assert final == RunStatus(RunState.FAILED,
                              reason="timed out: the Job ran past its deadline of 1 s")


async def test_an_unreachable_api_server_is_one_sentence(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    b = KubernetesBackend(BackendContext(home=tmp_path, artifacts=tmp_path,
                                         settings={"kubeconfig": str(config)}))
    from launch_tui.core.errors import BackendError

    with pytest.raises(BackendError, match=r"^kubernetes: cannot create the Job: the API "
                       r"server 127\.0\.0\.1:9 is unreachable \(Connection refused\)\.$"):
        await b.submit(spec("r10"), BuildResult(image="img:1"))
    missing = KubernetesBackend(BackendContext(
        home=tmp_path, artifacts=tmp_path, settings={"kubeconfig": str(config),
                                                     "context": "nope"}))
    with pytest.raises(BackendError, match=r"^kubernetes: cannot use context 'nope' of "
                                           r"kubeconfig .*"):
        await missing.submit(spec("r11"), BuildResult(image="img:1"))
