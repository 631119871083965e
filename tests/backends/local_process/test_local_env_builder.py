"""LocalEnvBuilder: working copies, cached virtualenvs built by real pip, git checkouts.

The requirements install a wheel shipped inside the job's source, so pip needs
no network and no build backend.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import stat
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from lp_harness import Harness

from launch_tui.backends.venv_cache import COMPLETE_MARKER, requirements_key
from launch_tui.core.errors import BuildError
from launch_tui.core.model import JobKind, RunState

PROJECT_ROOT = Path(__file__).resolve().parents[3]

MAIN = """\
import importlib.util, sys, tinypkg
print("value", tinypkg.VALUE)
print("prefix", sys.prefix)
print("sees the agent's packages:", importlib.util.find_spec("textual") is not None)
"""


def venv_job(lp: Harness, value: str = "42") -> dict[str, str | bytes]:
    wheel_name, wheel = lp.wheel(value=value)
    return {
        "main.py": MAIN,
        f"wheels/{wheel_name}": wheel,
        "requirements.txt": f"# pinned locally\n./wheels/{wheel_name}\n",
    }


async def test_a_code_job_gets_a_fresh_writable_copy_of_its_snapshot(lp: Harness) -> None:
    digest = lp.snapshot({"main.py": "print('hi')\n", "data/cfg.txt": "x\n"})
    for path in lp.ctx.snapshot_dir(digest).rglob("*"):
        if path.is_file():
            path.chmod(0o444)  # the artifact store may keep files read-only
    spec = lp.spec("python main.py", source={"snapshot": digest}, run_id="copy-run")
    src = lp.run_dir("copy-run") / "src"
    src.mkdir(parents=True)
    (src / "stale.txt").write_text("left over from an earlier attempt")

    built, result = await lp.build(spec)

    assert result.details == {"python": sys.executable, "workdir": str(src), "venv": None}
    assert result.commit is None and result.image is None
    assert built.environment["build"] == result.details
    assert (src / "data" / "cfg.txt").read_text() == "x\n"
    assert not (src / "stale.txt").exists()
    assert os.stat(src / "main.py").st_mode & stat.S_IWUSR
    handle = await lp.backend.submit(built, result)
    assert [c.text for c in await lp.logs(handle)] == ["hi"]


async def test_an_image_job_is_refused(lp: Harness) -> None:
    spec = lp.spec("python main.py", kind=JobKind.IMAGE, source={"image": "python:3.11"})
    with pytest.raises(BuildError) as err:
        await lp.build(spec)
    assert str(err.value) == (
        "job: image jobs cannot run on the local-process target; use a docker queue."
    )


async def test_a_missing_snapshot_is_a_build_error(lp: Harness) -> None:
    spec = lp.spec("python main.py", source={"snapshot": "ab" * 32})
    with pytest.raises(BuildError, match=r"code snapshot 'abababababab'.*missing"):
        await lp.build(spec)


async def test_a_requirements_file_not_in_the_source_is_a_build_error(lp: Harness) -> None:
    spec = lp.spec(
        "python main.py",
        source={"snapshot": lp.snapshot({"main.py": "print(1)\n"})},
        requirements="requirements.txt",
    )
    with pytest.raises(BuildError) as err:
        await lp.build(spec)
    assert str(err.value) == (
        "environment: the requirements file 'requirements.txt' is not in the job's source."
    )


async def test_a_venv_is_built_once_and_reused(lp: Harness) -> None:
    digest = lp.snapshot(venv_job(lp))
    first = lp.spec("python main.py", source={"snapshot": digest}, requirements="requirements.txt")
    built, result = await lp.build(first)

    assert result.cached is False
    venv = Path(result.details["venv"])
    assert venv.parent == lp.ctx.home / "venvs"
    assert result.details["python"] == str(venv / "bin" / "python")
    assert any("Successfully installed tinypkg-0.1" in line for line in lp.build_log)
    handle = await lp.backend.submit(built, result)
    texts = [c.text for c in await lp.logs(handle)]
    assert (await lp.wait(handle)).state == RunState.FINISHED
    # The job runs inside the venv, which is isolated from the agent's packages.
    assert texts == ["value 42", f"prefix {venv}", "sees the agent's packages: False"]

    lp.build_log.clear()
    second = lp.spec("python main.py", source={"snapshot": digest}, requirements="requirements.txt")
    started = time.monotonic()
    built2, result2 = await lp.build(second)
    assert time.monotonic() - started < 3
    assert result2.cached is True
    assert result2.details["python"] == result.details["python"]
    assert not any("Successfully installed" in line for line in lp.build_log)
    handle2 = await lp.backend.submit(built2, result2)
    assert [c.text for c in await lp.logs(handle2)][:2] == ["value 42", f"prefix {venv}"]


async def test_a_changed_vendored_package_gets_its_own_venv(lp: Harness, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for where, value in (("a", "1"), ("b", "2")):
        for name, data in venv_job(lp, value).items():
            path = tmp_path / where / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data if isinstance(data, bytes) else data.encode())
    key_a = requirements_key(tmp_path / "a" / "requirements.txt", tmp_path / "a")
    key_b = requirements_key(tmp_path / "b" / "requirements.txt", tmp_path / "b")
    # Same requirements.txt text, different wheel inside the source.
    assert (tmp_path / "a/requirements.txt").read_text() == (
        tmp_path / "b/requirements.txt"
    ).read_text()
    assert key_a != key_b


async def test_concurrent_builds_wait_for_each_other_and_replace_a_half_built_venv(
    lp: Harness, tmp_path: Path
) -> None:
    files = venv_job(lp)
    digest = lp.snapshot(files)
    # What a build killed half-way leaves: the venv directory without its marker.
    probe = tmp_path / "probe"
    for name, data in files.items():
        (probe / name).parent.mkdir(parents=True, exist_ok=True)
        (probe / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    key = requirements_key(probe / "requirements.txt", probe)
    half = lp.ctx.home / "venvs" / key
    (half / "bin").mkdir(parents=True)
    (half / "junk").write_text("half-built")

    specs = [
        lp.spec("python main.py", source={"snapshot": digest}, requirements="requirements.txt")
        for _ in range(2)
    ]
    results = await asyncio.gather(*(lp.build(s) for s in specs))

    assert sorted(r.cached for _, r in results) == [False, True]
    assert {r.details["venv"] for _, r in results} == {str(half)}
    assert not (half / "junk").exists()
    assert (half / COMPLETE_MARKER).exists()
    assert any("waiting for another build" in line for line in lp.build_log)
    assert any("removing an unfinished virtualenv" in line for line in lp.build_log)


async def test_a_broken_requirement_names_the_file_and_pips_error(lp: Harness) -> None:
    digest = lp.snapshot(
        {"main.py": "print(1)\n", "requirements.txt": "./wheels/missing-1.0-py3-none-any.whl\n"}
    )
    spec = lp.spec("python main.py", source={"snapshot": digest}, requirements="requirements.txt")
    with pytest.raises(BuildError) as err:
        await lp.build(spec)
    message = str(err.value)
    assert message.startswith("environment: installing requirements.txt failed (pip exit code 1)")
    assert "No such file or directory" in message and "missing-1.0-py3-none-any.whl" in message
    # pip's output reached the build log line by line.
    assert any(line.startswith("ERROR:") for line in lp.build_log)
    # Nothing half-built is left to be mistaken for a usable venv.
    venvs = lp.ctx.home / "venvs"
    assert [p for p in venvs.iterdir() if p.is_dir()] == []


def _git_daemon_module() -> ModuleType:
    # tests/ is not a package on every way pytest is started; load the shared fixture by path.
    path = PROJECT_ROOT / "tests" / "git_daemon.py"
    name = "lp_shared_git_daemon"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


async def test_a_git_job_is_checked_out_at_its_ref_and_runs(lp: Harness, tmp_path: Path) -> None:
    gd = _git_daemon_module()
    with gd.git_daemon(tmp_path / "served") as daemon:
        work = daemon.new_repo("proj")
        first = gd.commit_files(work, {"main.py": "print('first')\n"}, "first")
        gd.git(work, "tag", "v1")
        gd.commit_files(work, {"main.py": "print('second')\n"}, "second")
        daemon.publish(work)

        spec = lp.spec(
            "python main.py",
            kind=JobKind.GIT,
            source={"url": daemon.url("proj"), "ref": "v1"},
        )
        built, result = await lp.build(spec)

    assert result.commit == first
    handle = await lp.backend.submit(built, result)
    assert [c.text for c in await lp.logs(handle)] == ["first"]
    assert (await lp.wait(handle)).state == RunState.FINISHED
