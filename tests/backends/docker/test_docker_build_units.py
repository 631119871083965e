"""The Docker builder's pure parts: no daemon needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from launch_tui.backends.docker_build import (
    Scrubber,
    _split_ref,
    generate_dockerfile,
    local_references,
    pyproject_dependencies,
    sanitise_name,
)
from launch_tui.core.errors import BuildError


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_backend_modules_import_without_the_docker_sdk() -> None:
    """core finds backends by import path; that must work where `docker` is not installed."""
    code = (
        "import sys; sys.modules['docker'] = None\n"
        "import backends.docker_build, backends.docker_backend\n"
        "assert 'docker' not in {m for m in sys.modules if sys.modules[m] is not None}\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("job", "name"),
    [
        ("train", "train"),
        ("My Job!", "my-job"),
        ("a__b..c", "a-b-c"),
        ("--x--", "x"),
        ("???", "job"),
        ("ResNet_50.v2", "resnet_50.v2"),
    ],
)
def test_sanitise_name(job: str, name: str) -> None:
    assert sanitise_name(job) == name


def test_local_references_follow_paths_includes_and_find_links(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "requirements.txt": (
                "numpy==1.26  # a comment\n"
                "-r reqs/extra.txt\n"
                "--find-links=./wheels\n"
                "./pkgs/mine\n"
                "-e .\n"
                "https://example.invalid/x.whl\n"
            ),
            "reqs/extra.txt": "-c constraints.txt\nother @ file:../pkgs/other\n",
            "reqs/constraints.txt": "numpy<2\n",
            "wheels/a-1-py3-none-any.whl": "",
            "pkgs/mine/pyproject.toml": "",
            "train.py": "",
        },
    )
    assert local_references(tmp_path, "requirements.txt") == [
        "pkgs/mine",
        "reqs/constraints.txt",
        "reqs/extra.txt",
        "requirements.txt",
        "wheels",
    ]


def test_local_references_stay_inside_the_snapshot(tmp_path: Path) -> None:
    root = tmp_path / "snap"
    write(tmp_path, {"outside/secret.txt": "x", "snap/requirements.txt": "../outside\n"})
    assert local_references(root, "requirements.txt") == ["requirements.txt"]


def test_generated_dockerfile_installs_requirements_before_the_code() -> None:
    text = generate_dockerfile(
        "base:1",
        "requirements.txt",
        ["pkgs/mine", "requirements.txt"],
        pyproject_deps=False,
        entrypoint=("python", "train.py"),
        labels={"launch-tui.job": "a b"},
    )
    lines = text.splitlines()
    assert lines[0] == "FROM base:1"
    install = lines.index("RUN pip install -r requirements.txt")
    code = next(i for i, ln in enumerate(lines) if ln.startswith("COPY --chown=1000:1000 code/"))
    assert lines[install - 2 : install] == [
        'COPY ["code/pkgs/mine", "/app/pkgs/mine"]',
        'COPY ["code/requirements.txt", "/app/requirements.txt"]',
    ]
    assert install < code < lines.index("USER 1000")
    assert "PYTHONUNBUFFERED=1" in text and "VIRTUAL_ENV=/opt/venv" in text
    assert 'CMD ["python", "train.py"]' in lines
    assert 'LABEL "launch-tui.job"="a b"' in lines


def test_generated_dockerfile_without_requirements_has_no_install_step() -> None:
    text = generate_dockerfile("base:1", None, [], pyproject_deps=False, entrypoint=())
    assert "pip install" not in text and "CMD" not in text


def test_pyproject_dependencies(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": '[project]\nname = "x"\ndependencies = ["a>=1", "b"]\n'})
    assert pyproject_dependencies(tmp_path) == ["a>=1", "b"]
    write(tmp_path, {"pyproject.toml": "[project\n"})
    with pytest.raises(BuildError, match=r"^environment.pyproject: pyproject.toml is not valid"):
        pyproject_dependencies(tmp_path)


def test_scrubber_hides_credentials_and_their_base64() -> None:
    scrub = Scrubber("robot", "s3cret")
    text = "robot:s3cret cm9ib3Q6czNjcmV0 s3cret czNjcmV0 fine"
    assert scrub(text) == "*** *** *** *** fine"
    assert Scrubber(None, None)("unchanged") == "unchanged"


@pytest.mark.parametrize(
    ("ref", "split"),
    [
        ("python:3.11-slim", ("python", "3.11-slim")),
        ("ubuntu", ("ubuntu", "latest")),
        ("127.0.0.1:5000/team/x", ("127.0.0.1:5000/team/x", "latest")),
        ("127.0.0.1:5000/team/x:v1", ("127.0.0.1:5000/team/x", "v1")),
        ("x@sha256:abc", ("x", "sha256:abc")),
    ],
)
def test_split_ref(ref: str, split: tuple[str, str]) -> None:
    assert _split_ref(ref) == split
