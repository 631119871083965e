"""The built-in target resources, as the `launch_tui.backends` entry points name them.

This module imports no SDK: the factories import their backend module on first
use, so a machine without the `docker` extra can still validate docker queues.
"""

from __future__ import annotations

from typing import Any

from launch_tui.backends import schemas
from launch_tui.backends.docker_policy import check_docker_args
from launch_tui.backends.kubernetes_manifest import check_kubernetes_args
from launch_tui.backends.sagemaker_rules import QUEUE_KEYS as SAGEMAKER_QUEUE_KEYS
from launch_tui.backends.sagemaker_rules import check_sagemaker_args
from launch_tui.backends.vertex_rules import QUEUE_KEYS as VERTEX_QUEUE_KEYS
from launch_tui.backends.vertex_rules import check_vertex_args
from launch_tui.core.backend import Backend, BackendContext, BackendPlugin, Builder


def _local_backend(ctx: BackendContext) -> Backend:
    from launch_tui.backends.local_process import LocalProcessBackend

    return LocalProcessBackend(ctx)


def _local_builder(ctx: BackendContext) -> Builder:
    from launch_tui.backends.local_build import LocalEnvBuilder

    return LocalEnvBuilder(ctx)


def _docker_backend(ctx: BackendContext) -> Backend:
    from launch_tui.backends.docker_backend import DockerBackend

    return DockerBackend(ctx)


def _kubernetes_backend(ctx: BackendContext) -> Backend:
    from launch_tui.backends.kubernetes_backend import KubernetesBackend

    return KubernetesBackend(ctx)


def _kubernetes_builder(ctx: BackendContext) -> Builder:
    from launch_tui.backends.kubernetes_build import KubernetesBuilder

    return KubernetesBuilder(ctx)


def _sagemaker_backend(ctx: BackendContext) -> Backend:
    from launch_tui.backends.sagemaker_backend import SageMakerBackend

    return SageMakerBackend(ctx)


def _sagemaker_builder(ctx: BackendContext) -> Builder:
    from launch_tui.backends.sagemaker_build import SageMakerBuilder

    return SageMakerBuilder(ctx)


def _vertex_backend(ctx: BackendContext) -> Backend:
    from launch_tui.backends.vertex_backend import VertexBackend

    return VertexBackend(ctx)


def _vertex_builder(ctx: BackendContext) -> Builder:
    from launch_tui.backends.vertex_build import VertexBuilder

    return VertexBuilder(ctx)


def _docker_builder(ctx: BackendContext) -> Builder:
    from launch_tui.backends.docker_build import DockerBuilder

    return DockerBuilder(ctx)


def _local_jobs(kind: str, config: dict[str, Any], queue: str, settings: dict[str, Any]
                ) -> str | None:
    if kind == "image":
        return (f"queue: '{queue}' runs jobs as local processes, which cannot run an image "
                "job; enqueue it on a docker, kubernetes, sagemaker or vertex queue.")
    return None


def _pushes_images(where: str, example: str) -> Any:
    """A JobPolicy for targets that pull images from a registry: code and git jobs need
    a registry to push their built image to (the queue's builder.destination, or this
    machine's registry.destination setting for the target)."""

    def check(kind: str, config: dict[str, Any], queue: str, settings: dict[str, Any]
              ) -> str | None:
        if kind == "image":
            return None
        builder = config.get("builder")
        registry = settings.get("registry")
        if ((isinstance(builder, dict) and builder.get("destination"))
                or (isinstance(registry, dict) and registry.get("destination"))):
            return None
        return (f"builder.destination: queue '{queue}' names no registry to push this "
                f"{kind} job's image to, so {where} could not pull it; set builder: "
                f"{{destination: {example}}} in the queue's config, or enqueue an image job.")

    return check


LOCAL_PROCESS = BackendPlugin(
    "local-process", schemas.LOCAL_PROCESS, _local_backend, _local_builder,
    check_job=_local_jobs,
    # Names of the agent's environment the queue lets its jobs inherit (core.jobenv).
    queue_keys=("inherit_env",), order=0,
)
DOCKER = BackendPlugin(
    "docker", schemas.DOCKER, _docker_backend, _docker_builder, extra="docker",
    check_args=check_docker_args, queue_keys=("allow_volumes", "allow_host_network"), order=1,
)
KUBERNETES = BackendPlugin(
    "kubernetes", schemas.KUBERNETES, _kubernetes_backend, _kubernetes_builder,
    extra="kubernetes", check_args=check_kubernetes_args,
    check_job=_pushes_images("the cluster", "registry.example.com/team/launch"),
    queue_keys=("builder", "namespace", "context", "image_pull_grace_s", "allow_privileged"),
    order=2,
)
SAGEMAKER = BackendPlugin(
    "sagemaker", schemas.SAGEMAKER, _sagemaker_backend, _sagemaker_builder, extra="sagemaker",
    check_args=check_sagemaker_args, queue_keys=SAGEMAKER_QUEUE_KEYS, order=3,
)
VERTEX = BackendPlugin(
    "vertex", schemas.VERTEX, _vertex_backend, _vertex_builder, extra="vertex",
    check_args=check_vertex_args, queue_keys=VERTEX_QUEUE_KEYS, order=4,
    check_job=_pushes_images("Vertex AI", "REGION-docker.pkg.dev/PROJECT/REPOSITORY"),
)
