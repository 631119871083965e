"""Layering rules from DESIGN.md, checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

from tests.core.conftest import REPO


def test_core_imports_neither_textual_nor_rich_nor_backend_sdks() -> None:
    code = (
        "import sys, launch_tui.core.service, launch_tui.core.agent, launch_tui.core.resolve\n"
        "import launch_tui.core.registry as registry\n"
        "registry.resource_schema('docker')\n"
        "bad = [m for m in ('textual', 'rich', 'docker', 'kubernetes', 'boto3',"
        " 'google.cloud.aiplatform', 'launch_tui.tui') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout.strip()
    assert out == "", f"core pulled in: {out}"


def test_core_source_does_not_import_tui_or_backends() -> None:
    offenders = []
    for path in (REPO / "core").rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import tui", "from tui", "import backends", "from backends",
                                    "import textual", "from textual", "import rich",
                                    "from rich")):
                offenders.append(f"{path.relative_to(REPO)}: {stripped}")
    assert offenders == []
