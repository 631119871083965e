"""deploy/agent.Dockerfile builds an image that runs the agent the way
deploy/kubernetes runs it: as UID 10001 on a read-only root filesystem, its home
and /tmp writable, with the kubernetes and postgres extras installed.

The build installs from PyPI in real use. Here it installs from a package index
this test serves on 127.0.0.1 (the Dockerfile's PIP_INDEX_URL build argument), made
of the wheels this machine's pip downloads for the project's own requirements, so
the build itself reaches nothing but loopback (host networking) and the runs have
no network at all.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.backends.docker.helpers import BASE_IMAGE, connect_test_daemon

# The image's CLI runs on the embedded store in its own home whatever --store says,
# so the postgres pass would only build the same image again.
pytestmark = [pytest.mark.docker, pytest.mark.sqlite_only]

ROOT = Path(__file__).resolve().parents[2]


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def index_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PEP 503 index on 127.0.0.1 with the wheels the image needs."""
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(wheels),
         f"{ROOT}[kubernetes,postgres]", "setuptools>=68", "wheel"],
        check=True, timeout=600)
    simple = tmp_path_factory.mktemp("index") / "simple"
    for whl in wheels.glob("*.whl"):
        project = re.sub(r"[-_.]+", "-", whl.name.split("-")[0]).lower()
        (simple / project).mkdir(parents=True, exist_ok=True)
        whl.rename(simple / project / whl.name)
    handler = functools.partial(_Quiet, directory=str(simple.parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def agent_image(index_url: str) -> Iterator[str]:
    import docker

    client = connect_test_daemon()
    tag = f"launch-tui-test/agent-image:{uuid.uuid4().hex[:10]}"
    try:
        client.images.build(
            path=str(ROOT), dockerfile="deploy/agent.Dockerfile", tag=tag, rm=True,
            forcerm=True, network_mode="host", timeout=900,
            buildargs={"BASE": BASE_IMAGE, "PIP_INDEX_URL": index_url})
    except docker.errors.BuildError as exc:
        log = "".join(str(chunk.get("stream") or chunk.get("error") or "")
                      for chunk in exc.build_log)
        pytest.fail(f"deploy/agent.Dockerfile did not build: {exc}\n{log[-4000:]}")
    try:
        yield tag
    finally:
        try:
            client.images.remove(tag)
        except docker.errors.NotFound:
            pass


def run(image: str, *args: str, entrypoint: str | None = None) -> str:
    """Run like deploy/kubernetes/deployment.yaml: no network, read-only root, as the
    image's user, home and /tmp on tmpfs."""
    client = connect_test_daemon()
    out = client.containers.run(
        image, list(args), entrypoint=entrypoint, network_mode="none", read_only=True,
        tmpfs={"/var/lib/launch-tui": "uid=10001,gid=10001", "/tmp": ""},
        remove=True, stdout=True, stderr=True)
    return out.decode()


def test_image_runs_the_cli_as_a_non_root_user(agent_image: str) -> None:
    assert "agent" in run(agent_image, "--help")
    assert "--queue" in run(agent_image, "agent", "--help")
    assert run(agent_image, "-c", "id -u; id -g", entrypoint="/bin/sh").split() == [
        "10001", "10001"]


def test_image_has_the_cluster_extras(agent_image: str) -> None:
    out = run(agent_image, "-c",
              "import kubernetes, psycopg, launch_tui.backends.kubernetes_backend; print('ok')",
              entrypoint="python3")
    assert out.strip() == "ok"


def test_cli_works_with_only_its_home_and_tmp_writable(agent_image: str) -> None:
    out = run(agent_image, "-c",
              "launch-tui queue create k8s --resource kubernetes >/dev/null && "
              "launch-tui queue list --json", entrypoint="/bin/sh")
    assert '"k8s"' in out, out
