"""Secrets in what people see, through the real CLI: queue env and resource-args env,
git URLs with credentials, item overrides and runs show the mask, never the value;
a masked config sent back keeps the stored values; the agent and the job get the
real ones; events carry none."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from launch_tui.core import redact
from launch_tui.core.model import ErrorStage, RunState
from launch_tui.core.service import LaunchService
from tests.agent_harness import Lab, script

MASK = redact.MASK
SECRETS = ("hf_real_value_123", "listed_value_456", "db_pw_789", "s3_value_abc",
           "tok_git_secret", "item_token_val")
QUEUE = {
    "env": {"HF_TOKEN": "hf_real_value_123", "MY_VAR": "listed_value_456",
            "HF_HOME": "/data/hf", "DATABASE_URL": "postgresql://u:db_pw_789@db/launch"},
    "secret_env": ["MY_VAR"],
    "resource_args": {"env": {"S3_SECRET": "s3_value_abc"}},
    "allow_overrides": ["env"],
}
GIT_URL = "https://user:tok_git_secret@github.com/x/y.git"


def _no_secret(text: str) -> None:
    for value in SECRETS:
        assert value not in text, value


@pytest.fixture
def queue(cli, write) -> str:  # type: ignore[no-untyped-def]
    r = cli("queue", "create", "q", "-r", "local-process", "--config", write(QUEUE))
    assert r.code == 0, r.err
    return "q"


def test_queue_describe_and_list_show_the_mask(cli, queue: str) -> None:  # type: ignore[no-untyped-def]
    described = cli("queue", "describe", queue, "--json")
    listed = cli("queue", "list", "--json")
    plain = cli("queue", "describe", queue)
    for r in (described, listed, plain):
        assert r.code == 0, r.err
        _no_secret(r.out)
    config = described.json()["config"]
    assert config["env"] == {"HF_TOKEN": MASK, "MY_VAR": MASK, "HF_HOME": "/data/hf",
                             "DATABASE_URL": f"postgresql://u:{MASK}@db/launch"}
    assert config["resource_args"] == {"env": {"S3_SECRET": MASK}}
    (shown,) = listed.json()
    assert shown["config"]["env"]["HF_TOKEN"] == MASK


def test_a_git_url_with_credentials_is_masked(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("job", "create", "git", GIT_URL, "-e", "python train.py", "--name", "g")
    assert r.code == 0, r.err
    _no_secret(r.out + r.err)
    for args in (("job", "describe", "g", "--json"), ("job", "list", "--json"),
                 ("job", "describe", "g")):
        r = cli(*args)
        assert r.code == 0, r.err
        _no_secret(r.out)
    (version,) = cli("job", "describe", "g", "--json").json()["versions"]
    assert version["source"]["url"] == f"https://user:{MASK}@github.com/x/y.git"


async def test_items_runs_and_events_are_masked_and_the_agent_gets_real_values(
        cli, queue: str, write, service: LaunchService) -> None:  # type: ignore[no-untyped-def]
    assert cli("job", "create", "git", GIT_URL, "-e", "python train.py", "--name", "g").code == 0
    r = cli("launch", "-j", "g", "-q", queue, "-R",
            write({"env": {"MY_TOKEN": "item_token_val"}}), "--json")
    assert r.code == 0, r.err
    _no_secret(r.out)
    items = cli("items", "--json")
    _no_secret(items.out)
    assert items.json()[0]["resource_overrides"] == {"env": {"MY_TOKEN": MASK}}

    # The agent's port gets everything whole: the job needs the real values.
    claim = await service.claim_run("agent-1", [queue])
    assert claim.run is not None and claim.run.spec is not None
    spec = claim.run.spec
    assert spec["env"]["HF_TOKEN"] == "hf_real_value_123"
    assert spec["env"]["MY_VAR"] == "listed_value_456"
    assert spec["resource_args"]["env"] == {"S3_SECRET": "s3_value_abc",
                                            "MY_TOKEN": "item_token_val"}
    assert spec["source"]["url"] == GIT_URL
    assert (await service.agent_runs("agent-1"))[0].spec == spec
    await service.set_run_state(
        claim.run.id, RunState.FAILED, reason=f"git fetch {GIT_URL} failed",
        error_stage=ErrorStage.BUILD, error_message=f"fatal: could not read {GIT_URL}")
    await service.agent_log("agent-1", f"cloning {GIT_URL}", run_id=claim.run.id)

    runs = cli("runs", "--json")
    assert runs.code == 0, runs.err
    _no_secret(runs.out)
    (run,) = runs.json()
    assert run["spec"]["env"]["HF_TOKEN"] == MASK and run["spec"]["env"]["MY_VAR"] == MASK
    assert run["spec"]["env"]["HF_HOME"] == "/data/hf"
    assert run["spec"]["queue_config"]["env"]["HF_TOKEN"] == MASK
    assert run["spec"]["resource_args"]["env"] == {"S3_SECRET": MASK, "MY_TOKEN": MASK}
    assert run["spec"]["source"]["url"] == f"https://user:{MASK}@github.com/x/y.git"
    assert MASK in run["reason"] and MASK in run["error_message"]
    _no_secret(repr(await service.get_run(claim.run.id)))
    # Whoever watches the change feed sees no secret either.
    events = await service.events_after(0, limit=10_000)
    _no_secret(repr([e.payload() for e in events]))
    assert any(MASK in repr(e.payload()) for e in events)
    _no_secret(repr(await service.agent_logs()))


async def test_preview_is_masked(service: LaunchService, code_dir: Path) -> None:
    await service.create_code_job(code_dir, "python train.py", name="train")
    await service.create_queue("q", "local-process", QUEUE)
    spec = await service.preview("train", "q", resource_args={"env": {"MY_VAR": "item_val"}})
    assert spec["resource_args"]["env"] == {"S3_SECRET": MASK, "MY_VAR": MASK}
    _no_secret(repr(spec))


def test_a_mask_where_nothing_is_stored_is_refused(cli, queue: str, write) -> None:  # type: ignore[no-untyped-def]
    config = cli("queue", "describe", queue, "--json").json()["config"]
    config["env"]["NEW_TOKEN"] = MASK  # copied from somewhere else: no value to keep
    r = cli("queue", "update", queue, "--config", write(config))
    assert r.code == 1
    assert r.err.strip() == (
        "launch-tui: error: env.NEW_TOKEN: the value shows the mask (********) in place of a "
        "secret, and no value is stored to keep; give the real value.")
    r = cli("queue", "create", "q2", "-r", "local-process", "--config", write(config))
    assert r.code == 1 and "the value shows the mask (********)" in r.err
    assert r.err.startswith("launch-tui: error: env.DATABASE_URL: ")
    assert cli("queue", "describe", "q2").code == 1
    r = cli("launch", "-j", "nope", "-q", queue, "-R", write({"env": {"MY_TOKEN": MASK}}))
    assert r.code == 1 and "resource_args.env.MY_TOKEN: the value shows the mask" in r.err


@pytest.fixture
async def lab(tmp_path: Path, home: Path, store_url: str | None) -> AsyncIterator[Lab]:
    lab = await Lab.open(tmp_path, store_url)  # the same home and store as `cli`'s
    assert lab.home == home
    try:
        yield lab
    finally:
        await lab.close()


async def test_an_update_with_masked_values_keeps_the_real_ones(
        cli, queue: str, write, lab: Lab) -> None:  # type: ignore[no-untyped-def]
    config = cli("queue", "describe", queue, "--json").json()["config"]
    config["env"]["HF_HOME"] = "/other/hf"  # an edit of something visible
    r = cli("queue", "update", queue, "--config", write(config))
    assert r.code == 0, r.err
    shown = cli("queue", "describe", queue, "--json").json()["config"]
    assert shown["env"]["HF_HOME"] == "/other/hf" and shown["env"]["HF_TOKEN"] == MASK

    # The job sees the stored values (it prints whether each is the real one).
    job = await lab.job({"check.py": script("""
        import os
        want = {"HF_TOKEN": "hf_real_value_123", "MY_VAR": "listed_value_456",
                "S3_SECRET": "s3_value_abc", "HF_HOME": "/other/hf",
                "DATABASE_URL": "postgresql://u:db_pw_789@db/launch"}
        for name, value in want.items():
            print(name, os.environ.get(name) == value)
    """)}, "python check.py")
    item = await lab.service.enqueue(job, queue)
    await lab.agent([queue])
    run = await lab.run_of(item.id)
    assert (await lab.wait_run(run.id)).state == RunState.FINISHED
    lines = await lab.output(run.id)
    for name in ("HF_TOKEN", "MY_VAR", "S3_SECRET", "HF_HOME", "DATABASE_URL"):
        assert f"{name} True" in lines, lines


async def test_a_new_version_of_a_git_job_keeps_the_real_url(service: LaunchService) -> None:
    await service.create_git_job(GIT_URL, "python train.py", name="g", config_defaults={"lr": 1})
    shown = await service.update_job_config("g", {"lr": 2})
    assert shown.version.version == 1 and MASK in shown.version.source["url"]
    assert MASK in (await service.job_version("g:v1")).source["url"]
    # The new version was made from the stored source, not from what people are shown.
    await service.create_queue("q", "local-process")
    await service.enqueue("g:v1", "q")
    claim = await service.claim_run("agent-1", ["q"])
    assert claim.run is not None and claim.run.spec is not None
    assert claim.run.spec["source"]["url"] == GIT_URL
