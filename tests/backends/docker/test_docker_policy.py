"""check_docker_args: host-reaching resource args need the queue's consent.

Pure function tests (no daemon): each refusal with the exact sentence a user
reads, and each case that must pass.
"""

from __future__ import annotations

from typing import Any

import pytest

from launch_tui.backends.docker_policy import check_docker_args
from launch_tui.core.errors import ValidationError

HOST_NETWORK = (
    "resource_args.network: 'host' shares the agent's host network, which is not allowed "
    "by this queue (set allow_host_network: true in its config)."
)
VOLUMES = (
    "resource_args.volumes: mounting host paths is not allowed by this queue "
    "(set allow_volumes: true in its config)."
)


@pytest.mark.parametrize(
    ("args", "queue_config", "field", "sentence"),
    [
        ({"network": "host"}, {}, "resource_args.network", HOST_NETWORK),
        # Each key opens only its own door.
        ({"network": "host"}, {"allow_volumes": True}, "resource_args.network", HOST_NETWORK),
        ({"volumes": ["/data:/data"]}, {}, "resource_args.volumes", VOLUMES),
        (
            {"volumes": ["/data:/data:ro"]},
            {"allow_host_network": True},
            "resource_args.volumes",
            VOLUMES,
        ),
        # Only a real true allows: a string "true" or "false" from a config file does not.
        ({"network": "host"}, {"allow_host_network": "true"}, "resource_args.network",
         HOST_NETWORK),
        ({"volumes": ["/d:/d"]}, {"allow_volumes": "false"}, "resource_args.volumes", VOLUMES),
        ({"volumes": ["/d:/d"]}, {"allow_volumes": False}, "resource_args.volumes", VOLUMES),
        # Both asked, neither allowed: the first rule broken is named.
        ({"network": "host", "volumes": ["/d:/d"]}, {}, "resource_args.network", HOST_NETWORK),
    ],
)
def test_refused(
    args: dict[str, Any], queue_config: dict[str, Any], field: str, sentence: str
) -> None:
    with pytest.raises(ValidationError) as err:
        check_docker_args(args, queue_config)
    assert str(err.value) == sentence
    assert err.value.field == field


@pytest.mark.parametrize(
    ("args", "queue_config"),
    [
        ({}, {}),
        ({"network": "none"}, {}),
        # bridge is its own network namespace, not the host's.
        ({"network": "bridge"}, {}),
        ({"network": "host"}, {"allow_host_network": True}),
        ({"volumes": ["/data:/data:ro"]}, {"allow_volumes": True}),
        ({"volumes": []}, {}),  # nothing mounted
        (
            {"network": "host", "volumes": ["/d:/d"]},
            {"allow_host_network": True, "allow_volumes": True},
        ),
        # Nothing else in the docker schema reaches the host.
        (
            {"cpus": 2, "memory": "4g", "gpus": "all", "shm_size": "1g",
             "env": {"A": "1"}, "timeout_s": 60},
            {},
        ),
    ],
)
def test_allowed(args: dict[str, Any], queue_config: dict[str, Any]) -> None:
    check_docker_args(args, queue_config)  # does not raise


def test_the_queue_is_named_when_known() -> None:
    with pytest.raises(ValidationError) as err:
        check_docker_args({"network": "host"}, {}, queue="gpu-box")
    assert str(err.value) == (
        "resource_args.network: 'host' shares the agent's host network, which is not allowed "
        "by queue 'gpu-box' (set allow_host_network: true in its config)."
    )


def test_a_queue_config_as_core_stores_it_is_understood() -> None:
    """The mapping a RunSpec carries (QueueConfig.to_dict()) keeps the keys at the top."""
    from launch_tui.core.model import QueueConfig

    config = QueueConfig(extra={"allow_host_network": True}).to_dict()
    check_docker_args({"network": "host"}, config)
    with pytest.raises(ValidationError):
        check_docker_args({"volumes": ["/d:/d"]}, config)
