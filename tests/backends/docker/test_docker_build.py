"""DockerBuilder against the real daemon: code, git and image jobs, caching, failures."""

from __future__ import annotations

import json
from typing import Any

import pytest

from launch_tui.backends.docker_backend import DockerBackend
from launch_tui.backends.docker_build import DockerBuilder
from launch_tui.core.backend import BackendContext
from launch_tui.core.errors import BuildError
from launch_tui.core.model import JobKind, LogStream, RunState
from tests.backends.docker.conftest import Janitor
from tests.backends.docker.helpers import (
    BuildLogLines,
    make_spec,
    wait_done,
    wheel,
    write_snapshot,
)
from tests.git_daemon import GitDaemon, commit_files, git

pytestmark = pytest.mark.docker

TRAIN = """\
import json, os, sys
import mypkg
print("config", os.environ["WANDB_CONFIG"])
print("mypkg", mypkg.VERSION, "uid", os.getuid())
print("to stderr", file=sys.stderr)
"""


def project_files(train: str = TRAIN, pkg_version: str = "1.0") -> dict[str, str | bytes]:
    """A job whose requirement is a wheel in its own snapshot: pip needs no network."""
    whl = f"mypkg-{pkg_version}-py3-none-any.whl"
    return {
        "train.py": train,
        "requirements.txt": f"--no-index\n./pkgs/{whl}\n",
        f"pkgs/{whl}": wheel("mypkg", pkg_version, f"VERSION = {pkg_version!r}\n"),
    }


async def collect(backend: DockerBackend, handle: Any) -> list[tuple[LogStream, str]]:
    return [(c.stream, c.text) async for c in backend.logs(handle, follow=True)]


async def test_code_job_is_built_and_runs_with_its_config(
    ctx: BackendContext, janitor: Janitor, backend: DockerBackend
) -> None:
    digest = write_snapshot(ctx, project_files())
    config = {"lr": 0.1, "layers": [64, 64]}
    spec = make_spec(
        run_id=janitor.run_id(),
        job=janitor.job(),
        source={"snapshot": digest},
        environment={"requirements": "requirements.txt", "python": "3.11"},
        env={"WANDB_CONFIG": json.dumps(config)},
    )
    log = BuildLogLines()
    result = await DockerBuilder(ctx).build(spec, log)
    assert not result.cached
    assert result.image is not None
    assert result.image.startswith(f"launch-tui/{spec.job}:")
    assert any("Successfully tagged" in ln for ln in log.lines)

    handle = await backend.submit(
        make_spec(
            run_id=spec.run_id, job=spec.job, image=result.image, env=spec.env, source=spec.source
        )
    )
    lines = await collect(backend, handle)
    status = await wait_done(backend, handle)
    assert status.state is RunState.FINISHED, status
    assert status.exit_code == 0
    assert (LogStream.STDOUT, f"config {json.dumps(config)}") in lines
    # Installed from the requirements layer; the job runs as the image's non-root user.
    assert (LogStream.STDOUT, "mypkg 1.0 uid 1000") in lines
    assert (LogStream.STDERR, "to stderr") in lines


async def test_second_build_of_the_same_version_is_cached(
    ctx: BackendContext, janitor: Janitor
) -> None:
    digest = write_snapshot(ctx, project_files())
    spec = make_spec(
        run_id=janitor.run_id(),
        job=janitor.job(),
        source={"snapshot": digest},
        environment={"requirements": "requirements.txt"},
    )
    builder = DockerBuilder(ctx)
    first = await builder.build(spec, BuildLogLines())
    log = BuildLogLines()
    second = await DockerBuilder(ctx).build(spec, log)  # a fresh builder: the daemon is the cache
    assert second.cached and not first.cached
    assert second.image == first.image
    assert not any(ln.startswith("Step ") for ln in log.lines), log.lines


async def test_code_change_reuses_the_requirements_layer(
    ctx: BackendContext, janitor: Janitor
) -> None:
    job = janitor.job()
    builder = DockerBuilder(ctx)
    env = {"requirements": "requirements.txt"}

    async def build(files: dict[str, str | bytes]) -> BuildLogLines:
        digest = write_snapshot(ctx, files)
        log = BuildLogLines()
        spec = make_spec(
            run_id=janitor.run_id(), job=job, source={"snapshot": digest}, environment=env
        )
        result = await builder.build(spec, log)
        assert not result.cached
        return log

    await build(project_files())
    code_changed = await build(project_files(train=TRAIN + "print('more')\n"))
    assert " ---> Using cache" in code_changed.step("RUN pip install")
    assert not any("Using cache" in ln for ln in code_changed.step("COPY --chown"))

    requirement_changed = await build(project_files(train=TRAIN, pkg_version="2.0"))
    pip_step = requirement_changed.step("RUN pip install")
    assert " ---> Using cache" not in pip_step
    assert "Successfully installed mypkg-2.0" in pip_step


async def test_broken_requirement_fails_naming_the_step(
    ctx: BackendContext, janitor: Janitor
) -> None:
    digest = write_snapshot(
        ctx,
        {"train.py": "print(1)\n", "requirements.txt": "--no-index\nno-such-package-xyz==1.0\n"},
    )
    spec = make_spec(
        run_id=janitor.run_id(),
        job=janitor.job(),
        source={"snapshot": digest},
        environment={"requirements": "requirements.txt"},
    )
    log = BuildLogLines()
    with pytest.raises(BuildError) as err:
        await DockerBuilder(ctx).build(spec, log)
    janitor.failed_build(log)
    msg = str(err.value)
    assert msg.startswith("docker build: step "), msg
    assert "(RUN pip install -r requirements.txt) failed: " in msg
    assert "returned a non-zero code: 1" in msg
    assert "No matching distribution found for no-such-package-xyz==1.0" in msg
    # The tool's own output reached the build log too.
    assert any("no-such-package-xyz" in ln for ln in log.step("RUN pip install"))


async def test_missing_requirements_file_is_named(ctx: BackendContext, janitor: Janitor) -> None:
    digest = write_snapshot(ctx, {"train.py": "print(1)\n"})
    spec = make_spec(
        run_id=janitor.run_id(),
        job=janitor.job(),
        source={"snapshot": digest},
        environment={"requirements": "requirements.txt"},
    )
    with pytest.raises(BuildError, match=r"^environment.requirements: 'requirements.txt' is not"):
        await DockerBuilder(ctx).build(spec, BuildLogLines())


async def test_job_dockerfile_is_used_instead_of_the_generated_one(
    ctx: BackendContext, janitor: Janitor, backend: DockerBackend, base_image: str
) -> None:
    digest = write_snapshot(
        ctx,
        {
            "Dockerfile": f"FROM {base_image}\nENV FROM_DOCKERFILE=yes\nCOPY run.py /srv/run.py\n",
            "run.py": "import os; print('custom', os.environ['FROM_DOCKERFILE'])\n",
        },
    )
    rid, job = janitor.run_id(), janitor.job()
    spec = make_spec(
        run_id=rid,
        job=job,
        source={"snapshot": digest},
        environment={"dockerfile": "Dockerfile", "requirements": None},
        entrypoint=("python3", "/srv/run.py"),
    )
    result = await DockerBuilder(ctx).build(spec, BuildLogLines())
    handle = await backend.submit(
        make_spec(run_id=rid, job=job, image=result.image, entrypoint=spec.entrypoint)
    )
    assert await wait_done(backend, handle) == await backend.status(handle)
    assert [c.text async for c in backend.logs(handle)] == ["custom yes"]


async def test_image_job_uses_a_present_image_without_pulling(
    ctx: BackendContext, janitor: Janitor, backend: DockerBackend, base_image: str
) -> None:
    rid = janitor.run_id()
    spec = make_spec(
        run_id=rid,
        job=janitor.job(),
        kind=JobKind.IMAGE,
        source={"image": base_image},
        entrypoint=("python3", "-c", "print('from the image')"),
    )
    log = BuildLogLines()
    result = await DockerBuilder(ctx).build(spec, log)
    assert result.image == base_image and result.cached
    assert not any("pulling" in ln for ln in log.lines)

    handle = await backend.submit(
        make_spec(
            run_id=rid,
            job=spec.job,
            kind=JobKind.IMAGE,
            source=spec.source,
            image=result.image,
            entrypoint=spec.entrypoint,
        )
    )
    assert (await wait_done(backend, handle)).state is RunState.FINISHED
    assert [c.text async for c in backend.logs(handle)] == ["from the image"]


async def test_image_pull_failure_names_the_image(ctx: BackendContext, janitor: Janitor) -> None:
    # A registry on a closed loopback port: the pull fails at once, offline.
    ref = "127.0.0.1:9/launch-tui-test/absent:1.0"
    spec = make_spec(
        run_id=janitor.run_id(), job=janitor.job(), kind=JobKind.IMAGE, source={"image": ref}
    )
    log = BuildLogLines()
    with pytest.raises(BuildError) as err:
        await DockerBuilder(ctx).build(spec, log)
    assert str(err.value).startswith(f"image: cannot pull '{ref}': ")
    assert "connection refused" in str(err.value)
    assert log.lines == [f"image: pulling {ref}"]


async def test_git_job_at_a_tag(
    ctx: BackendContext, janitor: Janitor, backend: DockerBackend, git_server: GitDaemon
) -> None:
    work = git_server.new_repo("job.git")
    tagged = commit_files(
        work, {"train.py": "import os\nprint('release', os.path.exists('.git'))\n"}, "v1"
    )
    git(work, "tag", "v1")
    commit_files(work, {"train.py": "print('unreleased')\n"}, "later")
    git_server.publish(work)

    rid, job = janitor.run_id(), janitor.job()
    source = {"url": git_server.url("job.git"), "ref": "v1"}
    spec = make_spec(run_id=rid, job=job, kind=JobKind.GIT, source=source, job_digest="ab" * 32)
    log = BuildLogLines()
    result = await DockerBuilder(ctx).build(spec, log)
    assert result.commit == tagged
    assert f"git: checked out {tagged}" in log.lines

    handle = await backend.submit(
        make_spec(run_id=rid, job=job, kind=JobKind.GIT, source=source, image=result.image)
    )
    assert (await wait_done(backend, handle)).state is RunState.FINISHED
    # The tagged code, without the repository's .git directory.
    assert [c.text async for c in backend.logs(handle)] == ["release False"]
    # The build area under the work dir is cleaned up.
    assert list((ctx.work_dir / "docker-build").iterdir()) == []


async def test_push_failure_never_shows_credentials(ctx: BackendContext, janitor: Janitor) -> None:
    password = "hunter2-very-secret"
    pushing = BackendContext(
        home=ctx.home,
        artifacts=ctx.artifacts,
        settings={
            "registry": {
                "destination": "127.0.0.1:9/team",
                "username": "ci-robot",
                "password": password,
            }
        },
    )
    digest = write_snapshot(ctx, {"train.py": "print(1)\n"})
    job = janitor.job()
    spec = make_spec(run_id=janitor.run_id(), job=job, source={"snapshot": digest})
    log = BuildLogLines()
    with pytest.raises(BuildError) as err:
        await DockerBuilder(pushing).build(spec, log)
    msg = str(err.value)
    assert msg.startswith(f"image: cannot push '127.0.0.1:9/team/{job}:"), msg
    for text in [msg, *log.lines]:
        assert password not in text and "ci-robot" not in text
