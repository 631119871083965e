"""google-cloud-aiplatform takes seconds to import: nothing but a vertex queue's run
loads it. Fresh interpreters (`-I`, as an installed copy runs) run the CLI's
headless commands, including making and listing a vertex queue, and list what got
loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SDK = ("google.cloud.aiplatform", "google.cloud.aiplatform_v1", "google.api_core",
       "google.auth", "proto", "grpc")


def loaded_by(argv: list[str], home: Path, cwd: Path) -> tuple[list[str], str]:
    probe = (
        "import atexit, sys\n"
        f"sdk = {SDK!r}\n"
        "atexit.register(lambda: print('LOADED=' + ','.join(m for m in sdk "
        "if m in sys.modules), file=sys.stderr))\n"
        "from launch_tui.tui.cli import main\n"
        f"sys.argv = ['launch-tui', '--home', {str(home)!r}, *{argv!r}]\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True,
                          cwd=cwd, timeout=60, env={"PATH": "/usr/bin:/bin"})
    lines = [x for x in proc.stderr.splitlines() if x.startswith("LOADED=")]
    assert lines, proc.stderr
    return [m for m in lines[-1].removeprefix("LOADED=").split(",") if m], proc.stdout


def test_the_cli_and_vertex_queues_do_not_import_the_vertex_sdk(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = tmp_path / "vq.json"
    config.write_text(json.dumps({
        "project": "proj-123", "location": "us-central1",
        "resource_args": {"spec": {"staging_bucket": "gs://b"}, "run": {"timeout": 60}}}))
    outputs = {}
    for argv in (["--help"], ["queue", "create", "vq", "--resource", "vertex", "--config",
                              str(config)],
                 ["queue", "describe", "vq", "--json"], ["launch", "--help"]):
        loaded, outputs[argv[0] + argv[-1]] = loaded_by(argv, home, tmp_path)
        assert loaded == [], (argv, loaded)
    # The queue was made and checked (its vertex rules ran) without the SDK.
    assert "proj-123" in outputs["queue--json"], outputs


def test_the_sdk_is_there_for_the_backend_itself(tmp_path: Path) -> None:
    # The check above would pass vacuously if the probe could not see the SDK at all.
    code = ("import sys\nfrom launch_tui.backends.vertex_api import Vertex, Target\n"
            "Vertex(Target('p', 'l', 'http://127.0.0.1:9'))\n"
            "print('google.cloud.aiplatform_v1' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert proc.stdout.strip() == "True", proc.stderr
