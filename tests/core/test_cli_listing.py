"""`launch-tui runs` and `items` through the real CLI: --limit, --since, and --json
streamed page by page as one valid document."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

from launch_tui.core.service import LaunchService
from launch_tui.tui.cli import to_jsonable
from launch_tui.tui.listing import write_json_array
from tests.core.seeding import T0, seed_runs


async def test_runs_json_streams_pages_as_one_document(
        service: LaunchService, code_dir: Path, cli) -> None:  # type: ignore[no-untyped-def]
    made = await seed_runs(service, code_dir, 1203)  # three pages of 500
    r = cli("runs", "--json")
    assert r.code == 0, r.err
    assert [x["id"] for x in r.json()] == [m[1] for m in made[:50]]  # default: newest 50
    r = cli("runs", "--json", "--limit", "0")
    assert r.code == 0, r.err
    runs = r.json()
    assert [x["id"] for x in runs] == [m[1] for m in made]
    assert runs[0]["state"] == str(made[0][3]) and runs[0]["job_ref"] == "t:v0"
    r = cli("runs", "--json", "-n", "600", "-q", "a", "-s", "failed", "-s", "crashed")
    assert [x["id"] for x in r.json()] == [
        m[1] for m in made if m[2] == "a" and str(m[3]) in ("failed", "crashed")][:600]
    r = cli("runs", "-n", "3")
    assert r.code == 0 and len(r.out.splitlines()) == 4  # a header and three runs
    assert "--limit" in r.err


async def test_since_takes_a_duration_or_an_iso_time(
        service: LaunchService, code_dir: Path, cli) -> None:  # type: ignore[no-untyped-def]
    made = await seed_runs(service, code_dir, 40)
    r = cli("runs", "--json", "--since", "2h")  # seeded in 2023
    assert (r.code, r.out) == (0, "[]\n")
    iso = datetime.fromtimestamp(T0 + 6).isoformat()
    r = cli("runs", "--json", "--since", iso, "--limit", "0")
    assert [x["id"] for x in r.json()] == [m[1] for m in made if m[0] >= T0 + 6]
    r = cli("items", "--json", "--all", "--since", iso, "--limit", "2")
    assert [x["created_at"] for x in r.json()] == [T0 + 9, T0 + 9]
    for bad in ("yesterday", "2h30", "-3d", "2024-13-01"):
        r = cli("runs", "--since", bad)
        assert r.code == 1 and r.out == "", bad
        assert r.err.startswith(f"launch-tui: error: --since: '{bad}' is neither a duration")
        assert len(r.err.strip().splitlines()) == 1


async def test_streamed_rows_read_back_as_the_cli_s_other_json(
        service: LaunchService, code_dir: Path) -> None:
    await seed_runs(service, code_dir, 3)
    rows = [*await service.list_runs(), *await service.list_items(states=None),
            await service.get_queue("a"), await service.get_job("t")]
    out = io.StringIO()

    async def pages() -> AsyncIterator[list[Any]]:
        yield rows[:2]
        yield []
        yield rows[2:]

    assert await write_json_array(pages(), out) == len(rows)
    assert json.loads(out.getvalue()) == to_jsonable(rows)
    assert out.getvalue().count("\n") == len(rows) + 2  # a row a line, then "]"


async def test_an_empty_listing_is_an_empty_array() -> None:
    async def pages() -> AsyncIterator[list[Any]]:
        return
        yield

    out = io.StringIO()
    assert await write_json_array(pages(), out) == 0
    assert out.getvalue() == "[]\n"
