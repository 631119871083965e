"""Bad input through the real CLI: one sentence on stderr, a non-zero exit, nothing changed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


@pytest.fixture
def ready(cli, code_dir: Path):  # type: ignore[no-untyped-def]
    assert cli("job", "create", "code", str(code_dir), "-e", "python train.py",
               "--name", "train").code == 0
    assert cli("queue", "create", "local", "--resource", "local-process").code == 0


def _one_sentence(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("launch-tui: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_a_yaml_alias_bomb_is_refused_at_once(cli, ready, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    assert len(BOMB) < 1024
    started = time.monotonic()
    r = cli("launch", "-j", "train", "-q", "local", "-c", str(bomb))
    took = time.monotonic() - started
    assert r.code == 1
    line = _one_sentence(r.err)
    assert "expands to more than 100,000 values through YAML aliases" in line
    assert took < 30  # it used to run for a minute and die of MemoryError
    assert cli("items", "--json").json() == []


def test_yaml_aliases_of_ordinary_size_still_work(cli, ready, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("base: &b {lr: 0.5}\nother: *b\n")
    r = cli("launch", "-j", "train", "-q", "local", "-c", str(config))
    assert r.code == 0, r.err
    (item,) = cli("items", "--json").json()
    assert item["config_overrides"] == {"base": {"lr": 0.5}, "other": {"lr": 0.5}}


def test_an_unreadable_config_file_is_one_sentence(cli, ready) -> None:
    # A regular file that cannot be read, whoever runs the test (root reads any
    # file with a permission of 0): the process's own memory at offset 0.
    r = cli("launch", "-j", "train", "-q", "local", "-c", "/proc/self/mem")
    assert r.code == 1 and "cannot read /proc/self/mem" in _one_sentence(r.err)


def test_a_config_path_that_is_a_directory_is_one_sentence(cli, ready, tmp_path: Path) -> None:
    r = cli("launch", "-j", "train", "-q", "local", "-c", str(tmp_path))
    assert r.code != 0 and "Traceback" not in r.err


def test_the_root_project_option_is_honoured(cli, ready) -> None:
    r = cli("--project", "nope", "items")
    assert r.code == 1
    assert "project: 'nope' does not exist" in _one_sentence(r.err)
    assert cli("project", "create", "other").code == 0
    r = cli("--project", "other", "queue", "create", "q2", "--resource", "local-process")
    assert r.code == 0, r.err
    names = [q["name"] for q in cli("--project", "other", "queue", "list", "--json").json()]
    assert names == ["q2"]
    assert [q["name"] for q in cli("queue", "list", "--json").json()] == ["local"]
