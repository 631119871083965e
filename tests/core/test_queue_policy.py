"""Queue-config keys and host-reaching resource args, through the real CLI: each
refusal is one sentence naming the key or field, at queue create, queue update
and enqueue (not only when an agent submits), and nothing is stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from launch_tui.core.errors import ValidationError
from launch_tui.core.service import LaunchService

HOST_NETWORK = (
    "resource_args.network: 'host' shares the agent's host network, which is not allowed by "
    "queue 'd' (set allow_host_network: true in its config)."
)
VOLUMES = (
    "resource_args.volumes: mounting host paths is not allowed by queue 'd' "
    "(set allow_volumes: true in its config)."
)


def _one_sentence(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("launch-tui: error: "), err
    return lines[0].removeprefix("launch-tui: error: ")


@pytest.fixture
def job(cli, code_dir: Path) -> str:  # type: ignore[no-untyped-def]
    assert cli("job", "create", "code", str(code_dir), "-e", "python train.py",
               "--name", "train").code == 0
    return "train"


def refused(cli, *args: str) -> str:  # type: ignore[no-untyped-def]
    r = cli(*args)
    assert r.code == 1, r
    return _one_sentence(r.err)


def test_host_network_is_refused_at_create_and_update(cli, write) -> None:  # type: ignore[no-untyped-def]
    host = write({"resource_args": {"network": "host"}})
    assert refused(cli, "queue", "create", "d", "-r", "docker", "--config", host) == HOST_NETWORK
    assert cli("queue", "list", "--json").json() == []
    assert cli("queue", "create", "d", "-r", "docker").code == 0
    assert refused(cli, "queue", "update", "d", "--config", host) == HOST_NETWORK
    assert cli("queue", "describe", "d", "--json").json()["config"]["resource_args"] == {}
    # A string is not a yes: only a real boolean opens the host.
    text = write({"resource_args": {"network": "host"}, "allow_host_network": "true"})
    assert refused(cli, "queue", "update", "d", "--config", text) == (
        "allow_host_network: must be true or false (not 'true').")
    allowed = write({"resource_args": {"network": "host"}, "allow_host_network": True})
    assert cli("queue", "update", "d", "--config", allowed).code == 0
    config = cli("queue", "describe", "d", "--json").json()["config"]
    assert config["allow_host_network"] is True and config["resource_args"]["network"] == "host"


def test_volumes_are_refused_at_create_unless_allowed(cli, write) -> None:  # type: ignore[no-untyped-def]
    volumes = {"resource_args": {"volumes": ["/data:/data:ro"]}}
    assert refused(cli, "queue", "create", "d", "-r", "docker", "--config",
                   write(volumes)) == VOLUMES
    r = cli("queue", "create", "d", "-r", "docker", "--config",
            write({**volumes, "allow_volumes": True}))
    assert r.code == 0, r.err


def test_overrides_reaching_the_host_are_refused_at_enqueue(cli, write, job) -> None:  # type: ignore[no-untyped-def]
    config = write({"allow_overrides": True, "template_variables": {
        "net": {"type": "string", "enum": ["bridge", "host"], "default": "bridge"}},
        "resource_args": {"network": "{{net}}"}})
    assert cli("queue", "create", "d", "-r", "docker", "--config", config).code == 0
    launch = ("launch", "-j", job, "-q", "d")
    assert refused(cli, *launch, "-R", write({"network": "host"})) == HOST_NETWORK
    assert refused(cli, *launch, "-R", write({"volumes": ["/etc:/x"]})) == VOLUMES
    # Template values are substituted before the policy looks.
    assert refused(cli, *launch, "-v", "net=host") == HOST_NETWORK
    assert cli("items", "--json").json() == []
    assert cli(*launch, "-v", "net=bridge").code == 0


async def test_preview_applies_the_policy_too(service: LaunchService, code_dir: Path) -> None:
    await service.create_code_job(code_dir, "python train.py", name="train")
    await service.create_queue("d", "docker", {"allow_overrides": True})
    with pytest.raises(ValidationError) as caught:
        await service.preview("train", "d", resource_args={"network": "host"})
    assert str(caught.value) == HOST_NETWORK
    spec = await service.preview("train", "d", resource_args={"network": "bridge"})
    assert spec["resource_args"] == {"network": "bridge"}


@pytest.mark.parametrize("name", ["A=B", "", "1X", "MY-VAR", "with space"])
def test_bad_env_names_are_refused_naming_them(cli, write, job, name: str) -> None:  # type: ignore[no-untyped-def]
    shown = name or "''"
    line = refused(cli, "queue", "create", "q", "-r", "local-process", "--config",
                   write({"env": {name: "x"}}))
    assert line.startswith(f"env.{shown}: {name!r} is not a valid environment variable name")
    line = refused(cli, "queue", "create", "q", "-r", "local-process", "--config",
                   write({"resource_args": {"env": {name: "x"}}}))
    assert line.startswith(f"resource_args.env.{shown}: {name!r} is not a valid")
    assert cli("queue", "list", "--json").json() == []
    assert cli("queue", "create", "q", "-r", "local-process", "--config",
               write({"allow_overrides": ["env"]})).code == 0
    line = refused(cli, "launch", "-j", job, "-q", "q", "-R", write({"env": {name: "x"}}))
    assert line.startswith(f"resource_args.env.{shown}: {name!r} is not a valid")
    assert cli("items", "--json").json() == []


@pytest.mark.parametrize(("resource", "config", "sentence"), [
    ("docker", {"inherit_env": ["HF_HOME"]}, "queue config: unknown key 'inherit_env' for a "
     "docker queue"),
    ("local-process", {"allow_volumes": True}, "queue config: unknown key 'allow_volumes' for "
     "a local-process queue"),
    ("docker", {"allow_volumes": 1}, "allow_volumes: must be true or false (not 1)."),
    ("docker", {"secret_env": "MY_VAR"}, "secret_env: must be a list of environment variable "
     "names (not 'MY_VAR')."),
    ("docker", {"secret_env": ["MY VAR"]}, "secret_env: 'MY VAR' is not a valid environment "
     "variable name."),
    ("local-process", {"inherit_env": [1]}, "inherit_env: must be a list of environment "
     "variable names (not a list)."),
    ("local-process", {"inherit_env": ["A=B"]}, "inherit_env: 'A=B' is not a valid environment "
     "variable name or glob pattern."),
    ("docker", {"base_image": "Not An Image"}, "base_image: 'Not An Image' is not a valid "
     "image reference"),
    ("docker", {"env": {"TOKEN": 5}}, "env.TOKEN: must be a string value."),
    ("local-process", {"resource_args": {"nice": 20}},
     "resource_args.nice: 20 is greater than the maximum of 19."),
    ("local-process", {"resource_args": {"nice": -5}},
     "resource_args.nice: -5 is less than the minimum of 0."),
])
def test_policy_keys_are_checked_by_their_form(cli, write, resource: str, config: dict[str, Any],  # type: ignore[no-untyped-def]
                                               sentence: str) -> None:
    line = refused(cli, "queue", "create", "q", "-r", resource, "--config", write(config))
    assert line.startswith(sentence), line
    assert cli("queue", "list", "--json").json() == []


def test_policy_keys_survive_a_round_trip(cli, write) -> None:  # type: ignore[no-untyped-def]
    local = {"inherit_env": ["HF_HOME", "LC_*"], "secret_env": ["MY_VAR"],
             "base_image": "python:3.12-slim"}
    docker = {"allow_volumes": True, "allow_host_network": False, "secret_env": []}
    assert cli("queue", "create", "l", "-r", "local-process", "--config", write(local)).code == 0
    assert cli("queue", "create", "d", "-r", "docker", "--config", write(docker)).code == 0
    shown = {q["name"]: q for q in cli("queue", "list", "--json").json()}
    assert {k: shown["l"]["config"]["extra"][k] for k in local} == local
    assert {k: shown["d"]["config"]["extra"][k] for k in docker} == docker
    described = cli("queue", "describe", "l", "--json").json()["config"]
    assert {k: described[k] for k in local} == local
    # What describe prints is a config `queue update` takes back as it is.
    assert cli("queue", "update", "l", "--config", write(described)).code == 0
    assert cli("queue", "describe", "l", "--json").json()["config"] == described
