"""The real agent on a kubernetes queue, end to end.

What is real: the agent (in this process, or `launch-tui agent` processes that are
SIGKILLed and restarted), the store (SQLite or PostgreSQL, `--store`), the official
`kubernetes` client talking HTTP to an API server on 127.0.0.1, the Docker builder
on the private daemon, and the loopback image registry (Debian's docker-registry)
that images are pushed to and pulled from.

What is played: the cluster. The API server is the kmock-based stand-in
(tests/kube/apiserver.py); there is no controller or kubelet, so the test kubelet
(tests/kube/kubelet.py) creates each Job's pods and moves their states. By default
it really runs the pod's container on the private Docker daemon (`RunInDocker`:
image pulled from the registry, env and secretKeyRef resolved, output recorded as
the pod's log); tests that need a cluster's misfortunes script them (Unschedulable,
ImagePullBackOff, OOMKilled, preemption) and say so.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from launch_tui.backends.kubernetes_backend import KubernetesBackend
from launch_tui.backends.kubernetes_manifest import LABEL_RUN
from launch_tui.core.backend import BackendContext
from launch_tui.core.model import ItemState, LogStream, RunSpec, RunState
from tests.agent_harness import Lab, wait_for
from tests.backends.docker.helpers import BASE_IMAGE
from tests.kube.behaviours import (
    After,
    ImagePullBackOff,
    OOMKilled,
    Preempted,
    RunForever,
    Succeed,
    Unschedulable,
)
from tests.kube.fixtures import Kube

pytestmark = pytest.mark.docker

REGISTRY = os.environ.get("LAUNCH_TUI_TEST_REGISTRY", "127.0.0.1:55000")
WANDB_KEY = "wk-secret-0123456789"
TRAIN = """\
import json, os, time
cfg = json.loads(os.environ["WANDB_CONFIG"])
print("lr", cfg["lr"], flush=True)
print("key", "ok" if os.environ.get("WANDB_API_KEY") == EXPECTED else "missing", flush=True)
for i in range(int(os.environ.get("STEPS", "3"))):
    print("step", i, flush=True)
    time.sleep(float(os.environ.get("PAUSE", "0")))
""".replace("EXPECTED", repr(WANDB_KEY))


@pytest.fixture
def k8s(kube: Kube, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kube]:
    """The stand-in cluster, as the agent's (and its child processes') kubeconfig."""
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    yield kube


async def k8s_queue(lab: Lab, name: str = "k8s", **config: Any) -> str:
    base: dict[str, Any] = {
        "base_image": BASE_IMAGE,
        # A repository of the test's own: its first build cannot find a pushed image.
        "builder": {"destination": f"{REGISTRY}/lt-{uuid.uuid4().hex[:10]}"},
        "image_pull_grace_s": 2,
        "env": {"WANDB_API_KEY": WANDB_KEY},
        "allow_overrides": True,
    }
    await lab.service.create_queue(name, "kubernetes", {**base, **config})
    return name


async def sourced_output(lab: Lab, run_id: str) -> list[tuple[str | None, str]]:
    lines = await lab.service.run_logs(run_id, limit=100_000,
                                       streams=(LogStream.STDOUT, LogStream.STDERR))
    return [(line.source, line.text) for line in lines]


async def build_log(lab: Lab, run_id: str) -> str:
    lines = await lab.service.run_logs(run_id, limit=10_000, streams=(LogStream.BUILD,))
    return "\n".join(line.text for line in lines)


def jobs_of(kube: Kube, run_id: str) -> list[dict[str, Any]]:
    return kube.server.list("jobs", "default", label_selector=f"{LABEL_RUN}={run_id}")


def pods_of(kube: Kube, run_id: str) -> list[dict[str, Any]]:
    return kube.server.list("pods", "default", label_selector=f"{LABEL_RUN}={run_id}")


def secrets_of(kube: Kube, run_id: str) -> list[dict[str, Any]]:
    return kube.server.list("secrets", "default", label_selector=f"{LABEL_RUN}={run_id}")


# ---------------------------------------------------------------------- the happy path


async def test_code_job_is_built_pushed_and_run_on_two_pods(lab: Lab, k8s: Kube) -> None:
    """Cluster behaviour: none scripted; each pod's container really runs (RunInDocker)."""
    queue = await k8s_queue(lab, resource_args={"parallelism": 2})
    job = await lab.job({"train.py": TRAIN}, "python3 train.py", name="trainer",
                        config={"lr": 0.1})
    await lab.agent([queue], name="k8s-agent")
    item = await lab.service.enqueue(job, queue, config={"lr": 0.5})
    run = await lab.run_of(item.id, within=60)
    done = await lab.wait_run(run.id, within=85)
    assert done.state == RunState.FINISHED, (done.reason, done.error_message)

    # Built on the agent's daemon, pushed to the registry the cluster pulls from.
    (k8s_job,) = jobs_of(k8s, run.id)
    image = k8s_job["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith(REGISTRY + "/lt-"), image
    assert f"push: {image}" in await build_log(lab, run.id)

    # The override reached the job's environment; the API key through a Secret only.
    out = await sourced_output(lab, run.id)
    pods = sorted({source for source, _ in out})
    assert len(pods) == 2 and all(p and p.startswith(k8s_job["metadata"]["name"]) for p in pods)
    for pod in pods:
        assert [text for source, text in out if source == pod] == [
            "lr 0.5", "key ok", "step 0", "step 1", "step 2"]
    env = k8s_job["spec"]["template"]["spec"]["containers"][0]["env"]
    key = next(e for e in env if e["name"] == "WANDB_API_KEY")
    assert "value" not in key and key["valueFrom"]["secretKeyRef"]["key"] == "WANDB_API_KEY"
    assert WANDB_KEY not in repr(k8s_job)
    # Labels say whose it is, on the Job and on its pods.
    for obj in [k8s_job, *pods_of(k8s, run.id)]:
        labels = obj["metadata"]["labels"]
        assert labels[LABEL_RUN] == run.id
        assert labels["launch-tui/queue"] == queue and labels["launch-tui/agent"] == "k8s-agent"
    # The run's Secret is gone once the run ended; the CLI shows each line's pod.
    await wait_for(lambda: not secrets_of(k8s, run.id), "the run's Secret to be deleted", 10)
    # The TTL controller deletes the finished Job and its pods; the output stays.
    assert k8s.kubelet.expire_finished() == [k8s_job["metadata"]["name"]]
    assert not jobs_of(k8s, run.id) and not pods_of(k8s, run.id)
    shown = await lab.cli("logs", run.id)
    assert f"[{pods[0]}] lr 0.5" in shown.stdout
    assert f"[{pods[1]}] step 2" in shown.stdout

    # A second run of the same job: the registry has the image, nothing is rebuilt.
    second = await lab.service.enqueue(job, queue)
    run2 = await lab.run_of(second.id, within=30)
    done2 = await lab.wait_run(run2.id, within=60)
    assert done2.state == RunState.FINISHED, done2.reason
    log2 = await build_log(lab, run2.id)
    assert "is already in the registry; not building or pushing it again" in log2
    assert "push:" not in log2
    (job2,) = jobs_of(k8s, run2.id)
    assert job2["spec"]["template"]["spec"]["containers"][0]["image"] == image


# ---------------------------------------------------------------------- a cluster's misfortunes


async def test_unpullable_image_fails_naming_the_image(lab: Lab, k8s: Kube) -> None:
    """Cluster behaviour scripted: the kubelet cannot pull the image (ErrImagePull, then
    ImagePullBackOff) for as long as the Job exists."""
    k8s.kubelet.behaviour = lambda job: ImagePullBackOff()
    queue = await k8s_queue(lab)
    missing = f"{REGISTRY}/no-such/image:1"
    await lab.service.create_image_job(missing, entrypoint="python3 -c pass", name="ghost")
    await lab.agent([queue])
    item = await lab.service.enqueue("ghost", queue)
    run = await lab.run_of(item.id)
    done = await lab.wait_run(run.id, within=30)
    assert done.state == RunState.FAILED
    assert f"cannot pull image {missing}: ImagePullBackOff" in str(done.reason)
    assert "gave up after" in str(done.reason)
    # It would back off forever: the agent deleted the Job, and its pods with it.
    await wait_for(lambda: not jobs_of(k8s, run.id) and not pods_of(k8s, run.id),
                   "the Job and its pods to be deleted", 10)


async def test_unschedulable_is_the_waiting_reason_and_cancel_deletes_job_and_pods(
    lab: Lab, k8s: Kube
) -> None:
    """Cluster behaviour scripted: no node fits the pod (PodScheduled=False)."""
    message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    k8s.kubelet.behaviour = lambda job: Unschedulable(message)
    queue = await k8s_queue(lab)
    await lab.service.create_image_job(BASE_IMAGE, entrypoint="python3 -c pass", name="big")
    await lab.agent([queue])
    item = await lab.service.enqueue("big", queue, resource_args={"gpus": 8})
    run = await lab.run_of(item.id)

    async def waiting() -> bool:
        current = await lab.service.get_run(run.id)
        return current.state == RunState.STARTING and current.reason == f"Unschedulable: {message}"

    await wait_for(waiting, "the scheduler's message as the reason the run waits", 20)
    (listed,) = [r for r in await lab.service.list_runs() if r.id == run.id]
    assert listed.reason == f"Unschedulable: {message}"

    await lab.service.cancel(run.id)
    done = await lab.wait_run(run.id, within=20)
    assert done.state == RunState.STOPPED
    assert not jobs_of(k8s, run.id) and not pods_of(k8s, run.id)
    assert not secrets_of(k8s, run.id)


async def test_oom_killed_fails_as_out_of_memory(lab: Lab, k8s: Kube) -> None:
    """Cluster behaviour scripted: the kernel kills the container (OOMKilled, exit 137)."""
    k8s.kubelet.behaviour = lambda job: OOMKilled(lines=["allocating"])
    queue = await k8s_queue(lab)
    await lab.service.create_image_job(BASE_IMAGE, entrypoint="python3 -c pass", name="hog")
    await lab.agent([queue])
    item = await lab.service.enqueue("hog", queue, resource_args={"memory": "64Mi"})
    run = await lab.run_of(item.id)
    done = await lab.wait_run(run.id, within=20)
    assert (done.state, done.exit_code) == (RunState.FAILED, 137)
    assert re.match(r"out of memory: container job of pod \S+ was killed by the kernel "
                    r"\(memory limit 64Mi\)", str(done.reason)), done.reason
    assert [text for _, text in await sourced_output(lab, run.id)] == ["allocating"]


async def test_preempted_run_is_requeued(lab: Lab, k8s: Kube) -> None:
    """Cluster behaviour scripted: the scheduler preempts the first pod (DisruptionTarget);
    the retry's pod succeeds."""
    preempt = Preempted(lines=["epoch 1"], times=1)
    k8s.kubelet.behaviour = lambda job: preempt
    queue = await k8s_queue(lab, max_retries=1)
    await lab.service.create_image_job(BASE_IMAGE, entrypoint="python3 -c pass", name="spot")
    await lab.agent([queue])
    item = await lab.service.enqueue("spot", queue)
    run = await lab.run_of(item.id)
    done = await lab.wait_run(run.id, within=20)
    assert done.state == RunState.PREEMPTED
    assert "PreemptionByScheduler" in str(done.reason)
    assert "requeued as item #" in str(done.reason)
    retry_id = int(re.search(r"requeued as item #(\d+)", str(done.reason))[1])  # type: ignore[index]
    retry = await lab.run_of(retry_id, within=20)
    assert (await lab.wait_run(retry.id, within=20)).state == RunState.FINISHED
    assert (await lab.service.get_item(item.id)).state == ItemState.CLAIMED


# ---------------------------------------------------------------------- the agent dies


async def test_agent_sigkilled_and_restarted_reattaches_without_duplicate_lines(
    lab: Lab, k8s: Kube
) -> None:
    """Cluster behaviour scripted: two pods print a line every 0.1 s, while the agent
    that supervises them is SIGKILLed and started again under the same name."""
    lines = [f"line {i}" for i in range(60)]
    k8s.kubelet.behaviour = lambda job: Succeed(lines=lines, line_pause_s=0.1)
    queue = await k8s_queue(lab, resource_args={"parallelism": 2})
    await lab.service.create_image_job(BASE_IMAGE, entrypoint="python3 -c pass", name="long")
    agent = lab.spawn_agent([queue], "k8s-proc")
    item = await lab.service.enqueue("long", queue)
    run = await lab.run_of(item.id, within=30)
    await lab.wait_output(run.id, "line 10", within=30)
    await agent.kill()
    lab.spawn_agent([queue], "k8s-proc")
    done = await lab.wait_run(run.id, within=60)
    assert done.state == RunState.FINISHED, done.reason
    out = await sourced_output(lab, run.id)
    pods = sorted({source for source, _ in out})
    assert len(pods) == 2
    for pod in pods:
        assert [text for source, text in out if source == pod] == lines, pod
    assert len(jobs_of(k8s, run.id)) == 1  # re-attached, not submitted again


# ---------------------------------------------------------------------- refusals


async def test_privileged_spec_is_refused_in_one_sentence(lab: Lab, k8s: Kube) -> None:
    config = lab.root / "q.yaml"
    config.write_text(
        "resource_args:\n  spec:\n    template:\n      spec:\n        containers:\n"
        "          - securityContext: {privileged: true}\n")
    result = await lab.cli("queue", "create", "priv", "--resource", "kubernetes",
                           "--config", str(config))
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "launch-tui: error: resource_args.spec.template.spec.containers[0].securityContext."
        "privileged: a privileged container controls the node, which queue 'priv' does not allow "
        "(set allow_privileged: true in its config).")
    assert "priv" not in {q.name for q in await lab.service.list_queues()}
    # Nor can an enqueue's override bring it in on an existing queue.
    queue = await k8s_queue(lab)
    await lab.service.create_image_job(BASE_IMAGE, entrypoint="python3 -c pass", name="img")
    override = lab.root / "r.yaml"
    override.write_text("spec:\n  hostNetwork: true\n")
    result = await lab.cli("launch", "-j", "img", "-q", queue, "-R", str(override))
    assert result.returncode != 0
    assert "resource_args.spec.hostNetwork: sharing the node's network namespace" in (
        result.stderr)
    assert await lab.service.list_items(queue) == []


async def test_names_of_100_characters_run_as_valid_jobs(lab: Lab, k8s: Kube) -> None:
    k8s.kubelet.behaviour = lambda job: Succeed(lines=["ok"])
    queue = await k8s_queue(lab)
    name = "a-very-long-job-name-" + "x" * 79  # 100 characters
    await lab.service.create_image_job(BASE_IMAGE, entrypoint="python3 -c pass", name=name)
    await lab.agent([queue])
    item = await lab.service.enqueue(name, queue)
    run = await lab.run_of(item.id)
    assert (await lab.wait_run(run.id, within=20)).state == RunState.FINISHED
    (k8s_job,) = jobs_of(k8s, run.id)
    job_name = k8s_job["metadata"]["name"]
    assert len(job_name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", job_name)


# ---------------------------------------------------------------------- permissions


async def test_role_is_exactly_what_the_backend_calls(lab: Lab, k8s: Kube) -> None:
    """Every request the agent made in a run's life (submit with a Secret, watch, logs,
    cancel, clean-up, re-attach) against deploy/kubernetes/role.yaml's rules: nothing
    called that the Role does not grant, nothing granted that is never called."""
    import yaml

    role = yaml.safe_load((lab_root() / "deploy" / "kubernetes" / "role.yaml").read_text())
    granted = {(group, resource, verb) for rule in role["rules"]
               for group in rule["apiGroups"] for resource in rule["resources"]
               for verb in rule["verbs"]}
    k8s.kubelet.behaviour = lambda job: After(RunForever(lines=["going"]), 3.0,
                                              Succeed(lines=["done"]))
    queue = await k8s_queue(lab)
    await lab.service.create_image_job(BASE_IMAGE, entrypoint="python3 -c pass", name="r")
    agent = lab.spawn_agent([queue], "rbac-agent")
    first = await lab.service.enqueue("r", queue)
    run = await lab.run_of(first.id, within=30)
    await lab.wait_output(run.id, "going", within=20)
    await agent.kill()
    lab.spawn_agent([queue], "rbac-agent")  # re-attaches: find by label
    assert (await lab.wait_run(run.id, within=30)).state == RunState.FINISHED
    second = await lab.service.enqueue("r", queue)
    run2 = await lab.run_of(second.id, within=30)
    await lab.wait_output(run2.id, "going", within=20)
    await lab.service.cancel(run2.id)
    assert (await lab.wait_run(run2.id, within=30)).state == RunState.STOPPED
    # An agent that died between submitting a run and recording its handle finds the
    # run by label (its Job and its Secrets).
    backend = KubernetesBackend(BackendContext(home=lab.home, artifacts=lab.home / "a"))
    spec = RunSpec.from_dict((await lab.service.get_run(run.id)).spec)
    found = await backend.find(run.id, spec)
    assert found is not None and found.data["job"] == jobs_of(k8s, run.id)[0]["metadata"]["name"]
    await asyncio.sleep(0.5)
    called = {(group, resource + (f"/{sub}" if sub else ""), verb)
              for verb, group, resource, sub in k8s.server.requests}
    assert called == granted


def lab_root() -> Any:
    from pathlib import Path

    return Path(__file__).resolve().parents[2]
