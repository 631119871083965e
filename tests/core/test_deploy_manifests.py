"""deploy/kubernetes: the manifests that run a launch-tui agent inside a cluster.

Each file parses; the Deployment runs the agent under its ServiceAccount with the
store URL from the Secret (never in plain text), its arguments parse with the
real CLI, and the Role grants what the kubernetes backend calls. `kubectl
kustomize` (Debian's kubernetes-client, which .ci/run installs; its kustomize is
v2.0.3, so overlays use `bases:`) renders the set, and an overlay moves it to
another namespace and image. Rendering needs no API server; kubectl is given a
kubeconfig that does not exist, so it can reach no cluster.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from launch_tui.tui.cli import cli

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"


def load(name: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d is not None]
    assert len(docs) == 1, f"{name} holds {len(docs)} documents"
    return docs[0]


def kustomization() -> dict[str, Any]:
    return load("kustomization.yaml")


def manifests() -> dict[str, dict[str, Any]]:
    """kind -> object, for every resource the kustomization lists."""
    objs = [load(name) for name in kustomization()["resources"]]
    by_kind = {o["kind"]: o for o in objs}
    assert len(by_kind) == len(objs), "one object of each kind"
    return by_kind


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c["env"]}


def test_every_file_parses_and_is_listed() -> None:
    files = sorted(p.name for p in DEPLOY.iterdir())
    assert all(f.endswith(".yaml") for f in files), files
    listed = kustomization()["resources"]
    assert sorted([*listed, "kustomization.yaml"]) == files
    for kind, obj in manifests().items():
        assert obj["apiVersion"] and obj["metadata"]["name"], kind
        # The namespace is the kustomization's (the user's) to set, not a file's.
        assert "namespace" not in obj["metadata"], kind
    assert set(manifests()) == {
        "ServiceAccount", "Role", "RoleBinding", "Secret", "Deployment"}
    assert kustomization()["namespace"] == "launch-tui"


def test_role_shape() -> None:
    # That these are exactly the backend's calls is tests/e2e/test_kubernetes_agent.py's
    # test_role_is_exactly_what_the_backend_calls, against recorded requests.
    role = manifests()["Role"]
    assert role["apiVersion"] == "rbac.authorization.k8s.io/v1"
    assert role["metadata"]["name"] == "launch-tui-agent"
    assert role["rules"] == [
        {"apiGroups": ["batch"], "resources": ["jobs"],
         "verbs": ["create", "delete", "get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete", "list"]},
    ]
    for rule in role["rules"]:
        assert rule["verbs"] == sorted(rule["verbs"])


def test_role_is_bound_to_the_agents_service_account() -> None:
    m = manifests()
    binding = m["RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": m["Role"]["metadata"]["name"]}
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": m["ServiceAccount"]["metadata"]["name"]}]


def test_deployment_runs_the_agent_as_its_service_account() -> None:
    m = manifests()
    dep = m["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] == 1
    assert pod["serviceAccountName"] == m["ServiceAccount"]["metadata"]["name"]
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    c = container(dep)
    # The kustomization's `images:` replaces this name.
    assert c["image"].split(":")[0] in {i["name"] for i in kustomization()["images"]}
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["allowPrivilegeEscalation"] is False


def test_store_url_comes_from_the_secret_only() -> None:
    m = manifests()
    secret = m["Secret"]
    assert secret["metadata"]["name"] == "launch-tui-store"
    url = secret["stringData"]["url"]
    assert url.startswith("postgresql://") and "CHANGE-ME" in url
    c = container(m["Deployment"])
    ref = env_of(c)["LAUNCH_TUI_STORE"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "launch-tui-store", "key": "url"}
    assert ref["key"] in secret["stringData"]
    text = (DEPLOY / "deployment.yaml").read_text()
    assert "postgresql://" not in text and "CHANGE-ME" not in text
    assert all("value" not in e or "://" not in e["value"] for e in c["env"])


def test_agent_arguments_parse_with_the_cli() -> None:
    c = container(manifests()["Deployment"])
    env = env_of(c)
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    args = c["args"]
    assert args[0] == "agent" and "$(POD_NAME)" in args  # expanded by the kubelet
    # No `command`: the image's ENTRYPOINT is launch-tui (deploy/agent.Dockerfile).
    assert "command" not in c
    agent = cli.commands["agent"]
    ctx = agent.make_context("agent", [a.replace("$(POD_NAME)", "launch-tui-agent-0")
                                       for a in args[1:]])
    assert ctx.params["name"] == "launch-tui-agent-0"
    assert ctx.params["queues"] == ("k8s",)
    with pytest.raises(click.UsageError):
        agent.make_context("agent", ["--queue-name", "k8s"])


def test_home_and_tmp_are_empty_dirs_on_a_read_only_root() -> None:
    dep = manifests()["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    c = container(dep)
    home = env_of(c)["LAUNCH_TUI_HOME"]["value"]
    mounts = {v["mountPath"]: v["name"] for v in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    for path in (home, "/tmp"):
        assert "emptyDir" in volumes[mounts[path]], path


# ------------------------------------------------------------------- kubectl


@pytest.fixture
def kubectl(tmp_path: Path) -> Any:
    exe = shutil.which("kubectl")
    if exe is None:
        pytest.fail("kubectl is not on PATH; .ci/run and scripts/test-services.sh start "
                    "install Debian's kubernetes-client.", pytrace=False)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "KUBECONFIG": str(tmp_path / "no-such-kubeconfig")}

    def run(*args: str) -> list[dict[str, Any]]:
        done = subprocess.run([exe, *args], capture_output=True, text=True, env=env,
                              timeout=60)
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return [d for d in yaml.safe_load_all(done.stdout) if d is not None]

    return run


def test_kubectl_kustomize_renders_every_object_in_one_namespace(kubectl: Any) -> None:
    objs = kubectl("kustomize", str(DEPLOY))
    assert sorted(o["kind"] for o in objs) == sorted(manifests())
    assert {o["metadata"]["namespace"] for o in objs} == {"launch-tui"}
    (binding,) = [o for o in objs if o["kind"] == "RoleBinding"]
    assert binding["subjects"][0]["namespace"] == "launch-tui"
    (dep,) = [o for o in objs if o["kind"] == "Deployment"]
    assert container(dep)["image"] == "launch-tui-agent:latest"


def test_an_overlay_moves_the_agent_and_names_its_image(kubectl: Any, tmp_path: Path) -> None:
    shutil.copytree(DEPLOY, tmp_path / "base")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "bases": ["../base"],  # kustomize v2.0.3 (kubectl 1.20) knows no directory resources
        "namespace": "ml-team",
        "images": [{"name": "launch-tui-agent",
                    "newName": "registry.example.com/team/launch-tui-agent",
                    "newTag": "0.1.0"}],
    }))
    objs = kubectl("kustomize", str(overlay))
    assert {o["metadata"]["namespace"] for o in objs} == {"ml-team"}
    (binding,) = [o for o in objs if o["kind"] == "RoleBinding"]
    assert binding["subjects"][0]["namespace"] == "ml-team"
    (dep,) = [o for o in objs if o["kind"] == "Deployment"]
    assert container(dep)["image"] == "registry.example.com/team/launch-tui-agent:0.1.0"


# ------------------------------------------------------------- the agent image


def test_agent_image_gets_what_packaging_needs_and_runs_as_the_pods_user() -> None:
    """deploy/agent.Dockerfile copies every folder pyproject.toml packages (and the
    readme it names), the root's .dockerignore lets exactly those in, and the image's
    user is the UID the Deployment asks for. (tests/e2e/test_agent_image.py builds it.)"""
    import tomllib

    root = DEPLOY.parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"],
              *(f"{d}/" for d in project["tool"]["setuptools"]["package-dir"].values())}
    dockerfile = (root / "deploy" / "agent.Dockerfile").read_text()
    copied = {src for line in dockerfile.splitlines() if line.startswith("COPY ")
              for src in line.split()[1:-1]}
    assert copied == needed
    allowed = {line[1:] for line in (root / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    assert allowed == needed
    assert "*" in (root / ".dockerignore").read_text().splitlines()
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    pod = manifests()["Deployment"]["spec"]["template"]["spec"]["securityContext"]
    assert users == [f"{pod['runAsUser']}:{pod['runAsGroup']}"]
    assert 'ENTRYPOINT ["launch-tui"]' in dockerfile
