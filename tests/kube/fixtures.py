"""The `kube` fixture: a fresh API stand-in, kubelet and kubeconfig per test.

Registered as a pytest plugin from tests/conftest.py, so any test folder can use it.
Starting one costs a few milliseconds (an aiohttp server on a thread of its own).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.kube.apiserver import KubeStandIn
from tests.kube.kubelet import Kubelet


@dataclass
class Kube:
    server: KubeStandIn
    kubelet: Kubelet
    kubeconfig: Path


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[Kube]:
    """`kube.server` (KubeStandIn), `kube.kubelet` (Kubelet, default behaviour
    RunInDocker), `kube.kubeconfig` (context `standin`, namespace `default`, plus
    context `other` in namespace `team-b`)."""
    server = KubeStandIn().start()
    kubelet = Kubelet(server).start()
    path = server.write_kubeconfig(tmp_path / "kubeconfig", contexts={"other": "team-b"})
    try:
        yield Kube(server, kubelet, path)
    finally:
        kubelet.stop()
        server.stop()
