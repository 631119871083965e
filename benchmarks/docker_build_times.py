"""How long the Docker path takes for one small job, against a baseline.

Prints (median of a few runs each):
  baseline        `docker run --rm --network none BASE true`, measured now, on the same daemon
  cold build      a new job with nothing cached (not even the shared venv layer)
  code change     a rebuild after editing only code (the requirements layer is reused)
  cached build    the same job version again (the image exists: nothing is built)
  first log line  DockerBackend.submit() until the job's first line arrives through logs()

Needs the daemon and base image of `scripts/test-services.sh start`:
    eval "$(scripts/test-services.sh env)"; .venv/bin/python benchmarks/docker_build_times.py
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import statistics
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from launch_tui.backends.docker_backend import DockerBackend, container_name
from launch_tui.backends.docker_build import DockerBuilder
from launch_tui.core.backend import BackendContext
from launch_tui.core.model import JobKind, RunSpec

os.environ.setdefault("DOCKER_HOST", "unix:///tmp/launch-tui-docker/docker.sock")
BASE = os.environ.get("LAUNCH_TUI_TEST_BASE_IMAGE", "launch-tui/python-base:bookworm")
RUNS = 5
COLD_RUNS = 3


def wheel() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = "benchpkg-1.0.dist-info"
        for name, text in {
            "benchpkg/__init__.py": "X = 1\n",
            f"{info}/METADATA": "Metadata-Version: 2.1\nName: benchpkg\nVersion: 1.0\n",
            f"{info}/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
            f"{info}/RECORD": "",
        }.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), text)
    return buf.getvalue()


def snapshot(ctx: BackendContext, train: str) -> str:
    """A small job: train.py plus one requirement, a wheel shipped with the code (offline)."""
    files: dict[str, bytes] = {
        "train.py": train.encode(),
        "requirements.txt": b"--no-index\n./pkgs/benchpkg-1.0-py3-none-any.whl\n",
        "pkgs/benchpkg-1.0-py3-none-any.whl": wheel(),
    }
    digest = hashlib.sha256(b"".join(k.encode() + v for k, v in sorted(files.items()))).hexdigest()
    for rel, data in files.items():
        path = ctx.snapshot_dir(digest) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return digest


def spec(job: str, digest: str, base: str, image: str | None = None) -> RunSpec:
    return RunSpec(
        run_id=f"bench{uuid.uuid4().hex[:10]}",
        project="bench",
        queue="bench",
        resource="docker",
        job=job,
        version=0,
        kind=JobKind.CODE,
        entrypoint=("python", "train.py"),
        config={},
        resource_args={},
        env={},
        source={"snapshot": digest},
        environment={"requirements": "requirements.txt"},
        job_digest=digest,
        queue_config={"base_image": base},
        image=image,
    )


async def quiet(_line: str) -> None:
    return None


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    t0 = time.perf_counter()
    await fn()
    return time.perf_counter() - t0


async def main() -> None:
    import docker

    client = docker.from_env(version="auto")
    client.images.get(BASE)  # fails clearly if test-services has not run
    made_images: list[str] = []
    run_ids: list[str] = []
    figures: dict[str, list[float]] = {k: [] for k in ("base", "cold", "code", "cached", "first")}

    with tempfile.TemporaryDirectory() as tmp:
        ctx = BackendContext(home=Path(tmp) / "home", artifacts=Path(tmp) / "artifacts")
        builder, backend = DockerBuilder(ctx), DockerBackend(ctx)
        try:
            for _ in range(RUNS):
                t0 = time.perf_counter()
                proc = await asyncio.create_subprocess_exec(
                    "docker", "run", "--rm", "--network", "none", BASE, "true"
                )
                if await proc.wait() != 0:
                    raise SystemExit("baseline `docker run ... true` failed")
                figures["base"].append(time.perf_counter() - t0)

            for i in range(COLD_RUNS):
                # A base with a new image id: no layer of the generated Dockerfile can be reused.
                cold_base = f"launch-tui-bench/base:{uuid.uuid4().hex[:8]}"
                client.images.build(
                    fileobj=io.BytesIO(f"FROM {BASE}\nLABEL bench={uuid.uuid4()}\n".encode()),
                    tag=cold_base,
                    network_mode="none",
                    rm=True,
                    forcerm=True,
                )
                made_images.append(cold_base)
                job = f"bench-{uuid.uuid4().hex[:6]}"
                made_images.append(f"launch-tui/{job}")
                s1 = spec(job, snapshot(ctx, f"print('hello {i}')\n"), cold_base)
                figures["cold"].append(await timed(lambda s=s1: builder.build(s, quiet)))
                s2 = spec(job, snapshot(ctx, f"print('hello {i}, edited')\n"), cold_base)
                figures["code"].append(await timed(lambda s=s2: builder.build(s, quiet)))
                for _ in range(2):
                    figures["cached"].append(await timed(lambda s=s2: builder.build(s, quiet)))

                result = await builder.build(s2, quiet)
                assert result.cached
                for _ in range(2):
                    run = spec(job, s2.job_digest, cold_base, image=result.image)
                    run_ids.append(run.run_id)
                    t0 = time.perf_counter()
                    handle = await backend.submit(run)
                    async for _chunk in backend.logs(handle, follow=True):
                        figures["first"].append(time.perf_counter() - t0)
                        break
        finally:
            for rid in run_ids:
                try:
                    client.api.remove_container(container_name(rid), force=True)
                except docker.errors.NotFound:
                    pass
            for ref in reversed(made_images):
                for image in client.images.list(name=ref):
                    client.images.remove(image.id, force=True)

    def med(key: str) -> str:
        vals = figures[key]
        spread = f"n={len(vals)}, min {min(vals):.3f}, max {max(vals):.3f}"
        return f"{statistics.median(vals):7.3f} s  ({spread})"

    print(f"docker build and start times, daemon {os.environ['DOCKER_HOST']}, base {BASE}")
    print(f"  baseline: docker run --rm --network none BASE true   {med('base')}")
    print(f"  cold build (nothing cached)                        {med('cold')}")
    print(f"  rebuild after a code change (deps layer cached)    {med('code')}")
    print(f"  cached build (image exists, nothing built)         {med('cached')}")
    print(f"  submit -> first log line                           {med('first')}")
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
