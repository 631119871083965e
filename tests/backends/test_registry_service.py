"""The loopback image registry of scripts/test-services.sh, as the private dockerd sees it.

The Kubernetes builder pushes job images to a queue's `builder.destination`; its
tests push to this registry. Here: an image built on the base image goes in over
plain HTTP, the registry reports its digest to the daemon (`inspect_distribution`,
the call the builder uses to skip a rebuild), and after it is removed locally it
comes back by a pull with its own layer intact. Never skipped: `make test` always
starts the registry.
"""

from __future__ import annotations

import io
import json
import os
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.backends.docker.helpers import BASE_IMAGE, HINT, connect_test_daemon

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def registry() -> str:
    addr = os.environ.get("LAUNCH_TUI_TEST_REGISTRY")
    if not addr:
        pytest.fail(f"LAUNCH_TUI_TEST_REGISTRY is not set; {HINT}.", pytrace=False)
    try:
        with urllib.request.urlopen(f"http://{addr}/v2/", timeout=5) as resp:
            assert resp.status == 200
    except OSError as exc:
        pytest.fail(f"the registry at {addr} does not answer ({exc}); {HINT}.", pytrace=False)
    return addr


@pytest.fixture
def docker_client() -> Any:
    return connect_test_daemon()


@pytest.fixture
def repo(registry: str, docker_client: Any) -> Iterator[str]:
    """A repository of this test's own; its tags leave the daemon and the registry after."""
    import docker

    name = f"launch-tui-test/registry-{uuid.uuid4().hex[:10]}"
    yield name
    # By tag, never by id: one of them is the shared base image's.
    for image in docker_client.images.list(name=f"{registry}/{name}"):
        for tag in image.tags:
            if tag.startswith(f"{registry}/{name}:"):
                try:
                    docker_client.images.remove(tag)
                except docker.errors.NotFound:
                    pass
    # Deletes are enabled in the registry's config: drop the manifests we pushed.
    with urllib.request.urlopen(f"http://{registry}/v2/{name}/tags/list", timeout=5) as resp:
        tags = json.load(resp).get("tags") or []
    for tag in tags:
        head = urllib.request.Request(
            f"http://{registry}/v2/{name}/manifests/{tag}", method="HEAD",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        with urllib.request.urlopen(head, timeout=5) as resp:
            digest = resp.headers["Docker-Content-Digest"]
        delete = urllib.request.Request(
            f"http://{registry}/v2/{name}/manifests/{digest}", method="DELETE")
        with urllib.request.urlopen(delete, timeout=5) as resp:
            assert resp.status == 202


def push(client: Any, ref: str, tag: str) -> str:
    """Push and return the digest the daemon reports; fail on an error in the stream."""
    digest = None
    for line in client.images.push(ref, tag=tag, stream=True, decode=True):
        assert "error" not in line, f"push of {ref}:{tag} failed: {line}"
        digest = (line.get("aux") or {}).get("Digest") or digest
    assert digest, f"push of {ref}:{tag} reported no digest"
    return digest


def test_base_image_pushes_and_pulls_back_over_plain_http(
        registry: str, repo: str, docker_client: Any) -> None:
    import docker

    ref = f"{registry}/{repo}"
    marker = uuid.uuid4().hex
    # A layer only this test has, on top of the base image: after removal the pull
    # must fetch it from the registry (the base's layers stay on the daemon anyway).
    dockerfile = f"FROM {BASE_IMAGE}\nRUN echo {marker} > /marker\n"
    image, _ = docker_client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=f"{ref}:v1", network_mode="none",
        rm=True, forcerm=True)
    # The base image itself, as it is, under a second tag.
    assert docker_client.images.get(BASE_IMAGE).tag(ref, "base")

    pushed = push(docker_client, ref, "v1")
    base_pushed = push(docker_client, ref, "base")
    assert pushed != base_pushed

    seen = docker_client.api.inspect_distribution(f"{ref}:v1")
    assert seen["Descriptor"]["digest"] == pushed
    assert docker_client.api.inspect_distribution(f"{ref}:base")["Descriptor"]["digest"] \
        == base_pushed
    with pytest.raises(docker.errors.APIError):
        docker_client.api.inspect_distribution(f"{ref}:never-pushed")

    docker_client.images.remove(f"{ref}:v1")  # its only tag: the image and its layer go
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(f"{ref}:v1")

    pulled = docker_client.images.pull(ref, tag="v1")
    assert pulled.id == image.id
    assert f"{ref}@{pushed}" in pulled.attrs["RepoDigests"]
    out = docker_client.containers.run(pulled.id, ["cat", "/marker"], network_mode="none",
                                       remove=True)
    assert out.decode().strip() == marker
