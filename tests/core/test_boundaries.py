"""Layering rules (docs/architecture.md): tui -> core <- backends.

Statically, by the import-linter contracts in pyproject.toml; at run time, by
fresh interpreters that import the code the way an installed copy would (`-I`:
no current directory, no PYTHONPATH) and list what got loaded.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.core.conftest import REPO

HEAVY = ("textual", "rich", "docker", "kubernetes", "boto3", "google.cloud.aiplatform",
         "launch_tui.tui.app")


def _loaded_after(code: str, cwd: Path) -> list[str]:
    probe = (
        "import atexit, sys\n"
        f"heavy = {HEAVY!r}\n"
        "atexit.register(lambda: print('LOADED=' + ','.join(m for m in heavy if m in sys.modules),"
        " file=sys.stderr))\n" + code
    )
    proc = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True,
                          cwd=cwd, timeout=60)
    lines = [x for x in proc.stderr.splitlines() if x.startswith("LOADED=")]
    assert lines, proc.stderr
    return [m for m in lines[-1].removeprefix("LOADED=").split(",") if m]


def test_import_linter_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--no-cache"], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 3 kept, 0 broken." in proc.stdout


def test_core_imports_neither_textual_nor_rich_nor_backend_sdks(tmp_path: Path) -> None:
    code = (
        "import launch_tui.core.service, launch_tui.core.agent, launch_tui.core.resolve\n"
        "import launch_tui.core.registry as registry\n"
        "for name in registry.resource_names():\n"
        "    registry.resource_schema(name)\n"
    )
    assert _loaded_after(code, tmp_path) == []


def test_headless_commands_load_no_textual(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for argv in (["items", "--json"], ["runs", "--json"], ["queue", "list", "--json"],
                 ["agent", "--help"], ["launch", "--help"]):
        code = (
            "import sys\n"
            "from launch_tui.tui.cli import main\n"
            f"sys.argv = ['launch-tui', '--home', {str(home)!r}, *{argv!r}]\n"
            "main()\n"
        )
        assert _loaded_after(code, tmp_path) == [], argv
