"""Enqueueing through the real CLI: ordering, JSON output, and bad input that changes nothing."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from launch_tui.core.service import LaunchService
from launch_tui.core.store.items import NEAR

QUEUE_CONFIG = {
    "resource_args": {"timeout_s": "{{timeout}}"},
    "template_variables": {"timeout": {"type": "integer", "minimum": 5, "maximum": 60,
                                       "default": 30}},
    "allow_overrides": False,
}


@pytest.fixture
def seeded(cli, code_dir: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "defaults.yaml").write_text("lr: 0.1\nepochs: 3\nopt: adam\n")
    (tmp_path / "queue.json").write_text(json.dumps(QUEUE_CONFIG))
    schema = {"type": "object", "additionalProperties": False, "properties": {
        "lr": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "epochs": {"type": "integer", "minimum": 1},
        "opt": {"type": "string", "enum": ["adam", "sgd"]}}}
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    r = cli("job", "create", "code", str(code_dir), "-e", "python train.py", "--name", "train",
            "--config", str(tmp_path / "defaults.yaml"), "--schema", str(tmp_path / "schema.json"))
    assert r.code == 0, r.err
    assert "created job default/train:v0" in r.out
    r = cli("queue", "create", "local", "--resource", "local-process",
            "--config", str(tmp_path / "queue.json"))
    assert r.code == 0, r.err
    return tmp_path


def test_items_are_listed_in_the_order_they_will_run(cli, seeded: Path) -> None:
    for prio, epochs in [("low", 1), ("medium", 2), ("critical", 3), ("medium", 4), ("high", 5)]:
        r = cli("launch", "-j", "train", "-q", "local", "-P", prio, "--set", f"epochs={epochs}")
        assert r.code == 0, r.err
    r = cli("items", "-q", "local", "--json")
    assert r.code == 0, r.err
    items = r.json()
    assert [(i["priority"], i["config_overrides"]["epochs"], i["position"]) for i in items] == [
        ("critical", 3, 1), ("high", 5, 2), ("medium", 2, 3), ("medium", 4, 4), ("low", 1, 5)]
    first = items[0]
    assert first["job"] == "train" and first["version"] == 0 and first["state"] == "pending"
    assert first["template_values"] == {"timeout": 30}
    assert isinstance(first["id"], int)


def test_job_describe_json(cli, seeded: Path) -> None:
    r = cli("job", "describe", "train", "--json")
    assert r.code == 0, r.err
    job = r.json()
    v0 = job["versions"][0]
    assert job["aliases"] == {"latest": 0}
    assert v0["entrypoint"] == ["python", "train.py"]
    assert v0["config_defaults"] == {"lr": 0.1, "epochs": 3, "opt": "adam"}
    assert v0["input_schema"]["properties"]["opt"]["enum"] == ["adam", "sgd"]


def _store_state(home: Path) -> tuple[int, int, int]:
    """Items, the last event and jobs in the home's store, as the service sees them."""

    async def read() -> tuple[int, int, int]:
        async with await LaunchService.open(home=home) as svc:
            items = await svc.list_items(states=None, limit=100_000)
            return len(items), await svc.last_event_seq(), len(await svc.list_jobs())

    return asyncio.run(read())


BAD_LAUNCHES = [
    (["-j", "nope", "-q", "local"], "job: 'nope' does not exist in project 'default'."),
    (["-j", "train:prod", "-q", "local"], "job: 'train' has no alias 'prod'"),
    (["-j", "train:v9", "-q", "local"], "job: 'train' has no version v9"),
    (["-j", "train", "-q", "gpu"], "queue: 'gpu' does not exist in project 'default'"),
    (["-j", "train", "-q", "local", "-p", "ghost"], "project: 'ghost' does not exist"),
    (["-j", "train", "-q", "local", "--set", "lr=fast"], "config.lr: 'fast' is not of type"),
    (["-j", "train", "-q", "local", "--set", "lr=5"], "config.lr: 5 is greater than the maximum"),
    (["-j", "train", "-q", "local", "--set", "opt=lion"], "config.opt: 'lion' is not one of"),
    (["-j", "train", "-q", "local", "--set", "lrr=1"], "config: unknown field 'lrr'"),
    (["-j", "train", "-q", "local", "-v", "gpus=1"],
     "template variable 'gpus' is not declared by the queue"),
    (["-j", "train", "-q", "local", "-v", "timeout=999"],
     "template variable 'timeout': 999 is greater than the maximum of 60"),
    (["-j", "train", "-q", "local", "-R", "{R}"], "does not allow resource overrides"),
    (["-j", "train", "-q", "local", "-c", "{BAD}"], "--config:"),
]


@pytest.mark.parametrize("args,message", BAD_LAUNCHES)
def test_bad_launch_is_one_sentence_and_changes_nothing(cli, seeded: Path, home: Path,
                                                        args: list[str], message: str) -> None:
    (seeded / "r.json").write_text('{"timeout_s": 5}')
    (seeded / "bad.yaml").write_text("lr: [unclosed\n")
    args = [a.replace("{R}", str(seeded / "r.json")).replace("{BAD}", str(seeded / "bad.yaml"))
            for a in args]
    before = _store_state(home)
    r = cli("launch", *args)
    assert r.code == 1
    assert message in r.err
    assert r.err.startswith("launch-tui: error: ") and r.err.count("\n") == 1, r.err
    assert "Traceback" not in r.err
    assert r.out == ""
    assert _store_state(home) == before


def test_bad_queue_configs(cli, seeded: Path, home: Path) -> None:
    cases = {
        "unknown-arg.json": ({"resource_args": {"gpus": 2}}, "resource_args: unknown field 'gpus'"),
        "undeclared.json": ({"resource_args": {"timeout_s": "{{t}}"}},
                            "template variable 't' is used but not declared"),
        "badvar.json": ({"template_variables": {"t": {"minimum": 1}}},
                        "template_variables.t: needs a type"),
        "docker.json": ({"resource_args": {"memory": "lots"}},
                        "resource_args.memory: 'lots' does not match"),
        "mode.json": ({"wandb_mode": "cloud"}, "wandb_mode: 'cloud' must be one of"),
    }
    before = _store_state(home)
    for name, (config, message) in cases.items():
        (seeded / name).write_text(json.dumps(config))
        resource = "docker" if name == "docker.json" else "local-process"
        r = cli("queue", "create", "q-" + name.split(".")[0], "--resource", resource,
                "--config", str(seeded / name))
        assert r.code == 1 and message in r.err, (name, r.err)
    r = cli("queue", "create", "q", "--resource", "slurm")
    assert r.code == 2 and "slurm" in r.err
    assert _store_state(home) == before


def test_bad_job_inputs(cli, seeded: Path, home: Path, tmp_path: Path) -> None:
    before = _store_state(home)
    r = cli("job", "create", "git", "file:///srv/repo", "-e", "python x.py")
    assert r.code == 1 and "url: 'file:///srv/repo' is not an allowed git remote" in r.err
    r = cli("job", "create", "image", "Bad:Image:x")
    assert r.code == 1 and "image: 'Bad:Image:x' is not a valid image reference" in r.err
    r = cli("job", "create", "code", str(tmp_path / "missing"), "-e", "python x.py")
    assert r.code == 1 and "does not exist" in r.err
    (tmp_path / "broken.toml").write_text("lr = \n")
    r = cli("job", "create", "code", str(seeded), "-e", "python x.py",
            "--config", str(tmp_path / "broken.toml"))
    assert r.code == 1 and "is not valid TOML" in r.err
    assert _store_state(home) == before


def test_a_file_that_is_not_a_launch_tui_database(cli, home: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("create table customers (id integer)")
    db.commit()
    db.close()
    r = cli("--store", str(other), "queue", "list")
    assert r.code == 1 and "is not a launch-tui database" in r.err
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite at all" * 100)
    r = cli("--store", str(garbage), "queue", "list")
    assert r.code == 1 and "is not a launch-tui database" in r.err
    db = sqlite3.connect(other)
    assert db.execute("select name from sqlite_master").fetchall() == [("customers",)]
    db.close()


async def test_launch_and_requeue_say_the_place_even_far_back(
        cli, seeded: Path, service: LaunchService) -> None:
    r = await asyncio.to_thread(cli, "launch", "-j", "train", "-q", "local")
    assert r.code == 0, r.err
    assert r.out == "enqueued item #1 (train:v0) on local at position 1 (medium)\n"
    for _ in range(NEAR):
        await service.enqueue("train", "local")
    # More than NEAR ahead: the enqueue leaves the place out and the CLI counts it.
    r = await asyncio.to_thread(cli, "launch", "-j", "train", "-q", "local", "-P", "low")
    assert r.out == (f"enqueued item #{NEAR + 2} (train:v0) on local at position "
                     f"{NEAR + 2:,} (low)\n")
    r = await asyncio.to_thread(cli, "requeue", "1")
    assert r.out == (f"enqueued item #{NEAR + 3} (train:v0) on local at position "
                     f"{NEAR + 2:,} (medium)\n")
