"""Fixtures for the local-process target tests (the harness lives in lp_harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lp_harness import Harness


@pytest.fixture
def lp(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    try:
        yield harness
    finally:
        harness.kill_leftovers()
