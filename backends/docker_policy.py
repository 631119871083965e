"""Which docker resource args reach outside the container, and who may ask for them.

Two args give a job a way into the agent's machine: `network: host` (the
host's network namespace, so every service listening on its loopback) and
`volumes` (host paths mounted into the container). A queue turns each on with
its own config key: `allow_host_network` and `allow_volumes`, both `true`.
Anything else in the docker schema stays inside the container (`bridge` is a
separate network namespace; `gpus` only exposes the devices).

Pure and SDK-free: core checks resource args with it when a queue is created or
updated and when an item is enqueued, so nothing is queued that would be
refused; `DockerBackend.submit()` calls it again as a second line of defence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from launch_tui.core.errors import ValidationError

ALLOW_HOST_NETWORK = "allow_host_network"
ALLOW_VOLUMES = "allow_volumes"


def _allowed(queue_config: Mapping[str, Any], key: str) -> bool:
    # Only a real `true`: a config file's "false" (a string) must not open the host.
    return queue_config.get(key) is True


def check_docker_args(
    resource_args: Mapping[str, Any], queue_config: Mapping[str, Any], queue: str | None = None
) -> None:
    """Refuse host-reaching args the queue does not allow, naming the field and the key.

    `queue_config` is the queue's config mapping (its top-level keys, as in a
    queue's config file or `RunSpec.queue_config`). `queue`, when given, names
    the queue in the sentence; otherwise it says "this queue".
    """
    which = f"queue '{queue}'" if queue else "this queue"
    if resource_args.get("network") == "host" and not _allowed(queue_config, ALLOW_HOST_NETWORK):
        raise ValidationError(
            f"resource_args.network: 'host' shares the agent's host network, which is not "
            f"allowed by {which} (set {ALLOW_HOST_NETWORK}: true in its config).",
            field="resource_args.network",
        )
    if resource_args.get("volumes") and not _allowed(queue_config, ALLOW_VOLUMES):
        raise ValidationError(
            f"resource_args.volumes: mounting host paths is not allowed by {which} "
            f"(set {ALLOW_VOLUMES}: true in its config).",
            field="resource_args.volumes",
        )
