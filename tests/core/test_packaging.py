"""The package installs under one namespace and works from a wheel, outside the source tree.

The fresh virtualenv gets its third-party dependencies by a .pth file that points
at a directory of links to the development venv's packages (launch-tui's own
metadata and editable hook left out), so the test runs offline; launch-tui itself
comes only from the wheel. What it does not prove: that pip would resolve the same
dependency versions from the index.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

import pytest

from launch_tui.backends.local_forkserver import running_servers
from tests.core.conftest import REPO


def test_every_source_package_is_declared() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(config["packages"])
    found = {
        "launch_tui." + ".".join(init.parent.relative_to(REPO).parts)
        for top in ("core", "backends", "tui")
        for init in (REPO / top).rglob("__init__.py")
    }
    assert found - declared == set(), "packages missing from pyproject.toml"


def _deps_dir(root: Path) -> Path:
    """Links to every distribution of the development venv except launch-tui itself."""
    site = Path(sysconfig.get_paths()["purelib"])
    deps = root / "deps"
    deps.mkdir()
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.startswith(("launch_tui", "__editable__", "_virtualenv")) or name.endswith(".pth"):
            continue
        (deps / entry.name).symlink_to(entry)
    return deps


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(root / "dist"), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = (root / "dist").glob("launch_tui-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    (Path(purelib) / "zz_launch_tui_test_deps.pth").write_text(f"{_deps_dir(root)}\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True, capture_output=True, timeout=300,
    )
    return venv


def _run(venv: Path, *args: str, home: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["LAUNCH_TUI_HOME"] = str(home)
    return subprocess.run([str(venv / "bin" / "launch-tui"), *args], capture_output=True,
                          text=True, env=env, cwd=home.parent, timeout=timeout)


def test_the_wheel_installs_one_namespace(wheel_venv: Path) -> None:
    shown = subprocess.run(
        [str(wheel_venv / "bin" / "python"), "-m", "pip", "show", "-f", "launch-tui"],
        check=True, capture_output=True, text=True,
    ).stdout
    files = [line.strip() for line in shown.split("Files:", 1)[1].splitlines() if line.strip()]
    tops = {f.split("/", 1)[0] for f in files if not f.startswith("../")}
    assert tops == {"launch_tui", "launch_tui-0.1.0.dist-info"}, tops
    assert "launch_tui/tui/app.tcss" in files
    assert "launch_tui/backends/local_supervisor.py" in files


def test_the_installed_app_runs_a_local_job(wheel_venv: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    for command in ("demo", "agent"):
        r = _run(wheel_venv, command, "--help", home=home)
        assert r.returncode == 0 and "Usage: launch-tui" in r.stdout, r.stderr
    code = tmp_path / "job"
    code.mkdir()
    (code / "main.py").write_text(
        "import os, launch_tui_sdk\nprint('hello from', os.environ['LAUNCH_TUI_RUN_ID'])\n"
    )
    for args in (("queue", "create", "q", "--resource", "local-process"),
                 ("job", "create", "code", str(code), "--entrypoint", "python main.py",
                  "--name", "hello"),
                 ("launch", "-j", "hello", "-q", "q")):
        r = _run(wheel_venv, *args, home=home)
        assert r.returncode == 0, r.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    agent = subprocess.Popen(
        [str(wheel_venv / "bin" / "launch-tui"), "agent", "-q", "q"],
        env={**env, "LAUNCH_TUI_HOME": str(home)}, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        runs: list = []
        while time.monotonic() < deadline:
            runs = json.loads(_run(wheel_venv, "runs", "--json", home=home).stdout)
            if runs and runs[0]["state"] in ("finished", "failed", "crashed"):
                break
            time.sleep(0.3)
        assert runs and runs[0]["state"] == "finished", runs
        logs = _run(wheel_venv, "logs", runs[0]["id"], home=home).stdout
        assert f"hello from {runs[0]['id']}" in logs
    finally:
        agent.terminate()
        agent.wait(timeout=30)
        for pid, _ in running_servers(home):  # the local-process fork server it started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
