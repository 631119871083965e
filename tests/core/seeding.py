"""Seeding many runs at once for listing tests, through the store's bulk inserts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from launch_tui.core.model import ItemState, RunState
from launch_tui.core.service import LaunchService
from launch_tui.core.store import bulk, schema
from launch_tui.core.store.session import Store

STATES = [RunState.FINISHED, RunState.FINISHED, RunState.FAILED, RunState.CRASHED]
T0 = 1_700_000_000.0


async def seed_runs(service: LaunchService, code_dir: Path, count: int) -> list[tuple[Any, ...]]:
    """`count` runs over queues a and b, four runs to each creation time (ties are
    broken by id); returns (created_at, id, queue, state, agent) of each, newest first."""
    await service.create_code_job(code_dir, "python train.py", name="t")
    for q in ("a", "b"):
        await service.create_queue(q, "local-process")
    store = Store(service.settings.store_url, clock=time.time)
    job_id, queue_ids = await store.read(lambda conn: (
        conn.scalar(select(schema.jobs.c.id)),
        dict(conn.execute(select(schema.queues.c.name, schema.queues.c.id)).all())))
    made = []
    items_rows, runs_rows = [], []
    for n in range(count):
        at, queue, state = T0 + n // 4, "ab"[n % 2], STATES[n % len(STATES)]
        run_id = f"r{(n * 7919) % 100_000:05d}"  # ids not in creation order
        common = {"queue_id": queue_ids[queue], "job_id": job_id, "version": 0,
                  "created_at": at, "updated_at": at}
        items_rows.append({**common, "id": n + 1, "config_overrides": {},
                           "resource_overrides": {}, "template_values": {}, "priority": 2,
                           "state": str(ItemState.CLAIMED), "run_id": run_id})
        runs_rows.append({**common, "id": run_id, "item_id": n + 1, "agent": f"ag{n % 3}",
                          "state": str(state), "spec": {"n": n}, "timestamps": {}})
        made.append((at, run_id, queue, state, f"ag{n % 3}"))

    def write(conn: Any) -> None:
        bulk.add_items(conn, items_rows)
        bulk.add_runs(conn, runs_rows)

    await store.write(write)
    await store.dispose()
    return sorted(made, reverse=True)
