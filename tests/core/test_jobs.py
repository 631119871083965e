"""Jobs: code snapshots, versions, aliases, git and image rules, input schemas."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from launch_tui.core.errors import NotFound, ValidationError
from launch_tui.core.service import LaunchService


async def test_identical_content_is_the_same_version(service: LaunchService,
                                                     code_dir: Path) -> None:
    first = await service.create_code_job(code_dir, "python train.py", name="train")
    again = await service.create_code_job(code_dir, "python train.py", name="train",
                                          aliases=["prod"])
    assert first.created and not again.created
    assert again.version.version == 0
    assert again.version.aliases == ("latest", "prod")

    (code_dir / "train.py").write_text("print('changed')\n")
    changed = await service.create_code_job(code_dir, "python train.py", name="train")
    assert changed.created and changed.version.version == 1
    job = await service.get_job("train")
    assert job.aliases == {"latest": 1, "prod": 0}
    assert (await service.job_version("train:prod")).version == 0
    assert (await service.job_version("train:v1")).version == 1


async def test_snapshot_skips_vcs_caches_venvs_and_wandb(service: LaunchService,
                                                        code_dir: Path) -> None:
    (code_dir / ".git").mkdir()
    (code_dir / ".git" / "HEAD").write_text("ref")
    (code_dir / "__pycache__").mkdir()
    (code_dir / "__pycache__" / "x.pyc").write_bytes(b"x")
    (code_dir / "wandb").mkdir()
    (code_dir / "wandb" / "run.log").write_text("x")
    venv = code_dir / "myenv"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr")
    (code_dir / "requirements.txt").write_text("numpy\n")
    result = await service.create_code_job(code_dir, "python train.py")
    snap = service.artifacts / "code" / result.version.source["snapshot"]
    files = sorted(p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file())
    assert files == ["requirements.txt", "train.py"]
    assert result.version.environment["requirements"] == "requirements.txt"
    assert result.version.job == "train-code"


async def test_symlink_out_of_the_directory_is_refused(service: LaunchService, code_dir: Path,
                                                      tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("token")
    os.symlink(secret, code_dir / "leak.txt")
    with pytest.raises(ValidationError, match="outside the job directory"):
        await service.create_code_job(code_dir, "python train.py")
    assert not (service.artifacts / "code").exists() or not any(
        (service.artifacts / "code").iterdir())


async def test_snapshot_size_limit(home: Path, code_dir: Path) -> None:
    (home / "settings.toml").write_text("snapshot_max_mb = 1\n")
    svc = await LaunchService.open(home=home)
    try:
        (code_dir / "data.bin").write_bytes(b"\0" * (2 * 1024 * 1024))
        with pytest.raises(ValidationError, match="more than 1 MiB"):
            await svc.create_code_job(code_dir, "python train.py")
        assert await svc.list_jobs() == []
    finally:
        await svc.close()


async def test_missing_path_is_refused(service: LaunchService, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        await service.create_code_job(tmp_path / "nope", "python train.py")


@pytest.mark.parametrize("url", [
    "https://github.com/org/repo.git",
    "ssh://git@example.com/org/repo.git",
    "git@github.com:org/repo.git",
    "git://127.0.0.1:9418/repo",
    "http://localhost:8080/repo.git",
])
async def test_allowed_git_remotes(service: LaunchService, url: str) -> None:
    result = await service.create_git_job(url, "python train.py", ref="v1.0")
    assert result.version.source == {"url": url, "ref": "v1.0"}


@pytest.mark.parametrize("url,rule", [
    ("file:///etc/passwd", "not an allowed git remote"),
    ("ext::sh -c touch% /tmp/pwned", "not an allowed git remote"),
    ("git://example.com/repo", "allowed only for loopback"),
    ("http://example.com/repo.git", "allowed only for loopback"),
    ("/local/path", "not an allowed git remote"),
])
async def test_refused_git_remotes(service: LaunchService, url: str, rule: str) -> None:
    with pytest.raises(ValidationError, match=rule) as info:
        await service.create_git_job(url, "python train.py")
    assert str(info.value).startswith("url:")


@pytest.mark.parametrize("image", ["python:3.11-slim", "ghcr.io/org/trainer:v2",
                                   "localhost:5000/x/y@sha256:" + "a" * 64, "ubuntu"])
async def test_valid_image_references(service: LaunchService, image: str) -> None:
    result = await service.create_image_job(image, entrypoint="python -m train")
    assert result.version.source == {"image": image}


@pytest.mark.parametrize("image", ["Ubuntu:latest", "repo:tag:extra", "bad image", "x@sha256:12"])
async def test_invalid_image_references(service: LaunchService, image: str) -> None:
    with pytest.raises(ValidationError, match="not a valid image reference"):
        await service.create_image_job(image)


async def test_schema_inferred_from_defaults(service: LaunchService, code_dir: Path) -> None:
    result = await service.create_code_job(
        code_dir, "python train.py", config_defaults={"lr": 0.1, "epochs": 3, "amp": True,
                                                      "name": "x"})
    props = result.version.input_schema["properties"]
    assert {k: v["type"] for k, v in props.items()} == {
        "lr": "number", "epochs": "integer", "amp": "boolean", "name": "string"}


async def test_explicit_schema_checks_defaults(service: LaunchService, code_dir: Path) -> None:
    schema = {"type": "object", "properties": {"lr": {"type": "number", "maximum": 1}}}
    with pytest.raises(ValidationError, match=r"config.lr: 5 is greater than the maximum of 1"):
        await service.create_code_job(code_dir, "python train.py",
                                      config_defaults={"lr": 5}, input_schema=schema)


async def test_update_config_makes_a_new_version(service: LaunchService, code_dir: Path) -> None:
    await service.create_code_job(code_dir, "python train.py", config_defaults={"lr": 0.1})
    result = await service.update_job_config("train-code", {"lr": 0.2})
    assert result.created and result.version.version == 1
    assert result.version.config_defaults == {"lr": 0.2}
    v0 = await service.job_version("train-code:v0")
    assert result.version.source == v0.source


async def test_unknown_project_job_alias_version(service: LaunchService, code_dir: Path) -> None:
    await service.create_code_job(code_dir, "python train.py", name="train")
    with pytest.raises(NotFound, match="project: 'nope' does not exist"):
        await service.list_jobs("nope")
    with pytest.raises(NotFound, match="job: 'other' does not exist"):
        await service.job_version("other")
    with pytest.raises(NotFound, match="has no alias 'prod'"):
        await service.job_version("train:prod")
    with pytest.raises(NotFound, match=r"has no version v7 \(versions v0 to v0\)"):
        await service.job_version("train:v7")
