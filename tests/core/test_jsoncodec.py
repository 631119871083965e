"""The store's JSON codec: orjson's speed without losing what `json` kept."""

from __future__ import annotations

import json
from pathlib import Path

from launch_tui.core.service import LaunchService
from launch_tui.core.store import jsoncodec


def test_values_orjson_refuses_still_round_trip() -> None:
    big = 2**70
    assert jsoncodec.loads(jsoncodec.dumps({"seed": big})) == {"seed": big}
    assert jsoncodec.loads(jsoncodec.dumps({1: "a", "t": (1, 2)})) == {"1": "a", "t": [1, 2]}
    # Rows written by `json` before may hold NaN or Infinity tokens.
    old = json.dumps({"lr": float("inf")})
    assert jsoncodec.loads(old) == {"lr": float("inf")}
    # NaN is not JSON (PostgreSQL refuses it): written as null.
    assert jsoncodec.loads(jsoncodec.dumps([float("nan")])) == [None]


async def test_a_config_with_a_big_integer_survives_the_store(
        service: LaunchService, code_dir: Path) -> None:
    await service.create_code_job(code_dir, "python train.py", name="train")
    await service.create_queue("cpu", "local-process")
    await service.enqueue("train", "cpu", config={"seed": 2**70, "layers": [1, 2]})
    run = (await service.claim_run("agent", ["cpu"])).run
    assert run is not None
    assert run.spec["config"]["seed"] == 2**70
    assert (await service.get_run(run.id)).spec["config"]["layers"] == [1, 2]
