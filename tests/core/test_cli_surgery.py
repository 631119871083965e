"""Queue surgery, history and "why" through the real `launch-tui` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _setup(cli: Any, code_dir: Path, n: int = 3) -> None:
    assert cli("queue", "create", "cpu", "--resource", "local-process").code == 0
    assert cli("queue", "create", "gpu", "--resource", "docker").code == 0
    assert cli("job", "create", "code", str(code_dir), "--entrypoint", "python train.py",
               "--name", "train").code == 0
    for _ in range(n):
        assert cli("launch", "-j", "train", "-q", "cpu").code == 0


def _ids(cli: Any, *args: str) -> list[int]:
    result = cli("items", "--json", *args)
    assert result.code == 0, result.err
    return [i["id"] for i in result.json()]


def test_items_are_moved_and_the_order_follows(cli: Any, code_dir: Path) -> None:
    _setup(cli, code_dir)
    top = cli("item", "top", "#3")
    assert top.code == 0 and top.out.strip() == (
        "item #3 (train:v0) is at position 1 on cpu (priority medium)")
    assert _ids(cli, "-q", "cpu") == [3, 1, 2]
    assert cli("item", "bottom", "3").code == 0
    assert _ids(cli, "-q", "cpu") == [1, 2, 3]
    assert cli("item", "priority", "2", "critical").code == 0
    assert _ids(cli, "-q", "cpu") == [2, 1, 3]
    moved = cli("item", "move", "1", "gpu")
    assert moved.code == 0 and "on gpu" in moved.out
    assert _ids(cli, "-q", "gpu") == [1]


def test_bad_surgery_is_one_sentence_and_changes_nothing(cli: Any, code_dir: Path) -> None:
    _setup(cli, code_dir, n=2)
    for args, message in [
        (("item", "top", "1"), "launch-tui: error: item: #1 is already at the top of queue "
                               "'cpu'.\n"),
        (("item", "move", "1", "nope"), "launch-tui: error: queue: 'nope' does not exist in "
                                        "project 'default' (queues: cpu, gpu).\n"),
        (("item", "top", "77"), "launch-tui: error: item: #77 does not exist.\n"),
        (("queue", "resume", "cpu"), "launch-tui: error: queue: 'cpu' is not held.\n"),
    ]:
        result = cli(*args)
        assert (result.code, result.err) == (1, message), args
    usage = cli("item", "priority", "1", "urgent")
    assert usage.code == 2 and "'urgent' is not one of" in usage.err
    assert cli("item", "top", "x").code == 2
    assert _ids(cli, "-q", "cpu") == [1, 2]


def test_hold_shows_in_listings_and_items_say_why(cli: Any, code_dir: Path) -> None:
    _setup(cli, code_dir, n=1)
    held = cli("queue", "hold", "cpu", "--reason", "driver upgrade")
    assert held.code == 0 and held.out.startswith("queue cpu held")
    listing = cli("queue", "list").out.splitlines()
    assert listing[1].split()[:4] == ["cpu", "local-process", "1", "held:"]
    assert "driver upgrade" in listing[1]
    [item] = cli("items", "--json").json()
    assert item["why"].startswith("queue cpu is held: driver upgrade")
    assert cli("queue", "describe", "cpu", "--json").json()["held_at"] is not None
    assert cli("queue", "hold", "cpu").err == "launch-tui: error: queue: 'cpu' is already held.\n"
    assert cli("queue", "resume", "cpu").code == 0
    [item] = cli("items", "--json").json()
    assert item["why"] == "no agent serves queue cpu (none ever has)"


def test_cancel_many_and_history(cli: Any, code_dir: Path) -> None:
    _setup(cli, code_dir)
    first = cli("cancel", "1", "#2")
    assert first.code == 0 and first.out.splitlines() == ["item #1 cancelled",
                                                          "item #2 cancelled"]
    again = cli("cancel", "2", "3")
    assert again.code == 1
    assert again.out.splitlines() == ["item #3 cancelled"]
    assert again.err == "launch-tui: error: item: #2 is already cancelled.\n"
    assert _ids(cli) == []
    history = cli("items", "--all", "--json").json()
    assert [(i["id"], i["outcome"], i["why"]) for i in history] == [
        (3, "cancelled", "cancelled by user"), (2, "cancelled", "cancelled by user"),
        (1, "cancelled", "cancelled by user")]
    table = cli("items", "--all").out.splitlines()
    assert table[0].split() == ["POS", "ID", "QUEUE", "JOB", "PRIORITY", "OUTCOME", "AGE",
                                "TOOK", "WHY"]
    described = cli("describe", "#3")
    assert described.code == 0 and "why: cancelled by user" in described.out
    assert cli("describe", "nope").err == (
        "launch-tui: error: run: 'nope' does not exist (an item is #ID).\n")


def test_enqueue_refuses_an_image_job_on_a_local_queue(cli: Any, code_dir: Path) -> None:
    _setup(cli, code_dir, n=0)
    assert cli("job", "create", "image", "python:3.11-slim", "--name", "img").code == 0
    refused = cli("launch", "-j", "img", "-q", "cpu")
    assert refused.code == 1
    assert refused.err == (
        "launch-tui: error: queue: 'cpu' runs jobs as local processes, which cannot run an "
        "image job; enqueue it on a docker, kubernetes, sagemaker or vertex queue.\n")
    assert _ids(cli, "--all") == []


def test_the_demo_seeds_its_items_once(cli: Any) -> None:
    """`make run` runs `launch-tui demo` every time; only the first enqueues."""
    first = cli("demo", "--no-app")
    assert (first.code, first.out) == (
        0, "demo project 'default' ready with queue 'local' (2 items enqueued)\n")
    again = cli("demo", "--no-app")
    assert (again.code, again.out) == (
        0, "demo project 'default' ready with queue 'local' (already seeded, nothing "
           "enqueued)\n")
    assert _ids(cli, "-q", "local") == [1, 2]
    jobs = cli("job", "list", "--json")
    assert sorted(j["name"] for j in jobs.json()) == ["evaluate", "train"]
