"""Code snapshots travel with the store: made on one machine, run by an agent on another.

"Another machine" is another home (its own artifacts, work and fork server) on the
same store: on SQLite, home A's launch.db named by path; on PostgreSQL, the test's
database. What is asserted is what a user would see (run states, output, error
sentences) and what is left in the store and on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import stat
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update

from launch_tui.core import snapshot_blobs
from launch_tui.core.agent import LaunchAgent
from launch_tui.core.errors import BuildError, ValidationError
from launch_tui.core.model import AgentStatus, ErrorStage, LogStream, RunState
from launch_tui.core.service import LaunchService
from launch_tui.core.snapshot_archive import ArchiveError, pack, unpack
from launch_tui.core.snapshots import collect, digest_of
from launch_tui.core.store import blobs as blobs_db
from launch_tui.core.store.schema import blob_chunks, blobs
from tests.agent_harness import Lab, script

TRAIN = script(
    """
    import pathlib

    print("data:", pathlib.Path("data/nested/words.txt").read_text().strip())
    print("helper:", __import__("helper").GREETING)
    """
)


def _tree(root: Path) -> dict[str, tuple[bool, bytes]]:
    """Every regular file under `root`: relative path -> (executable, content)."""
    return {p.relative_to(root).as_posix(): (bool(p.stat().st_mode & stat.S_IXUSR),
                                             p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file()}


def _code(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def _store_of(lab: Lab) -> str:
    """What another machine names as the store: the lab's PostgreSQL URL, or home A's
    SQLite file (the only way two homes on one machine share an embedded store)."""
    return lab.store_url or str(lab.home / "launch.db")


async def _rows(service: LaunchService) -> tuple[int, int]:
    """(blobs rows, blob_chunks rows) in the store."""
    def count(conn: Any) -> tuple[int, int]:
        return (conn.scalar(select(func.count()).select_from(blobs)),
                conn.scalar(select(func.count()).select_from(blob_chunks)))

    return await service._store.read(count)


@contextlib.asynccontextmanager
async def _machine(lab: Lab, name: str) -> AsyncIterator[LaunchService]:
    """A service of another machine: a home of its own (`Lab.machine`: its processes
    are stopped with the lab's) on the lab's store."""
    service = await LaunchService.open(home=lab.machine(name), store=_store_of(lab))
    try:
        yield service
    finally:
        await service.close()


@contextlib.asynccontextmanager
async def _agent(service: LaunchService, queue: str, **kw: Any) -> AsyncIterator[LaunchAgent]:
    agent = LaunchAgent(service, [queue], poll_interval_s=1.0, cancel_grace_s=2.0, **kw)
    await agent.start()
    try:
        yield agent
    finally:
        await asyncio.wait_for(agent.stop(cancel_runs=True), 30)


async def _build_log(service: LaunchService, run_id: str) -> list[str]:
    lines = await service.run_logs(run_id, limit=10_000, streams=(LogStream.BUILD,))
    return [line.text for line in lines]


# ---------------------------------------------------------------- another machine runs it


async def test_a_code_job_made_with_one_home_runs_on_an_agent_with_another(lab: Lab) -> None:
    queue = await lab.queue()
    src = _code(lab.root / "src", {"train.py": TRAIN, "helper.py": "GREETING = 'hello'\n",
                                   "data/nested/words.txt": "several words\n"})
    made = await lab.cli("job", "create", "code", str(src), "-e", "python train.py",
                         "--name", "tj")
    assert made.returncode == 0, made.stderr
    digest = (await lab.service.job_version("tj")).source["snapshot"]
    assert (lab.home / "artifacts" / "code" / digest).is_dir()  # the maker keeps its copy

    async with _machine(lab, "b") as b:
        cache = b.artifacts / "code" / digest
        assert not b.artifacts.exists()
        item = await lab.service.enqueue("tj", queue)
        async with _agent(b, queue, name="agent-b"):
            run = await lab.wait_run((await lab.run_of(item.id)).id, within=60)
        output = await lab.output(run.id)
        assert run.state == RunState.FINISHED, (run.error_message, output)
        assert output == ["data: several words", "helper: hello"]
        assert f"source: fetched code snapshot {digest[:12]} from the store" in (
            await _build_log(b, run.id))
        # Home B now holds the tree, cached by digest; nothing half-made beside it.
        assert _tree(cache) == _tree(src)
        assert os.listdir(b.artifacts / "code") == [digest]


async def test_concurrent_runs_of_one_job_fetch_it_once(lab: Lab) -> None:
    queue = await lab.queue()
    job = await lab.job({"train.py": "print(open('data.txt').read())\n",
                         "data.txt": "x" * 3_000_000}, "python train.py")
    async with _machine(lab, "b") as b:
        items = [await lab.service.enqueue(job, queue) for _ in range(3)]
        async with _agent(b, queue, name="agent-b", max_jobs=3):
            runs = [await lab.wait_run((await lab.run_of(i.id)).id, within=60) for i in items]
        assert [r.state for r in runs] == [RunState.FINISHED] * 3, [r.error_message for r in runs]
        fetched = [any("fetched code snapshot" in line for line in await _build_log(b, r.id))
                   for r in runs]
        assert fetched.count(True) == 1, fetched
        assert len(os.listdir(b.artifacts / "code")) == 1


async def test_a_snapshot_in_neither_place_fails_the_run_at_build(lab: Lab) -> None:
    queue = await lab.queue()
    job = await lab.job({"train.py": "print('never')\n"}, "python train.py", name="tj")
    digest = (await lab.service.job_version(job)).source["snapshot"]

    def lose(conn: Any) -> None:  # as if the store had lost it (or predates blobs)
        conn.execute(delete(blob_chunks))
        conn.execute(delete(blobs))

    await lab.service._store.write(lose)
    async with _machine(lab, "b") as b:
        item = await lab.service.enqueue(job, queue)
        async with _agent(b, queue, name="agent-b"):
            run = await lab.wait_run((await lab.run_of(item.id)).id, within=60)
        assert (run.state, run.error_stage) == (RunState.FAILED, ErrorStage.BUILD)
        assert run.error_message == (
            f"job: the code snapshot '{digest[:12]}' of tj:v0 is neither on this machine "
            f"({b.artifacts / 'code'}) nor in the store.")
        assert not (b.artifacts / "code").exists() or os.listdir(b.artifacts / "code") == []

    # The machine that made it still runs it from its own copy.
    item = await lab.service.enqueue(job, queue)
    await lab.agent([queue], name="agent-a")
    run = await lab.wait_run((await lab.run_of(item.id)).id, within=60)
    assert run.state == RunState.FINISHED, run.error_message


# ---------------------------------------------------------------- the blob itself


ODD_TREE: dict[str, str | bytes] = {
    "a.txt": "first file, long enough to hold the byte a tampering test changes\n" * 40,
    "run.sh": "#!/bin/sh\necho ran\n",
    "empty": "",
    "deep/er/still/empty.py": "",
    "deep/er/mod.py": "X = 1\n",
    "ünïcode/名前.txt": "non-ascii names survive\n",
    "long/" + "d" * 120 + "/" + "f" * 120 + ".txt": "a path over the old tar limit\n",
    "bin/data.bin": bytes(range(256)) * 64,
}


async def test_the_stored_blob_round_trips_byte_for_byte(lab: Lab) -> None:
    src = _code(lab.root / "odd", ODD_TREE)
    os.chmod(src / "run.sh", 0o755)
    os.chmod(src / "deep/er/mod.py", 0o700)
    made = await lab.service.create_code_job(src, "sh run.sh", name="odd")
    digest = made.version.source["snapshot"]
    blob = await lab.service._store.read(blobs_db.status, digest)
    assert blob is not None and blob.complete

    async with _machine(lab, "b") as b:
        assert await b.ensure_snapshot(digest, "odd:v0") is True
        assert await b.ensure_snapshot(digest, "odd:v0") is False  # cached now
        fetched = _tree(b.artifacts / "code" / digest)
    assert fetched == _tree(src)
    assert {rel for rel, (x, _) in fetched.items() if x} == {"run.sh", "deep/er/mod.py"}
    assert digest_of(collect(b.artifacts / "code" / digest, 1 << 30)) == digest


def test_the_archive_is_the_same_bytes_every_time(tmp_path: Path) -> None:
    src = _code(tmp_path / "odd", ODD_TREE)
    os.chmod(src / "run.sh", 0o755)
    files = collect(src, 1 << 30)
    entries = [(f.rel, f.executable) for f in files]
    first, second = io.BytesIO(), io.BytesIO()
    assert pack(src, entries, first) == pack(src, entries, second) == digest_of(files)
    os.utime(src / "a.txt", (1, 1))  # times and owners are not part of it
    third = io.BytesIO()
    pack(src, entries, third)
    assert first.getvalue() == second.getvalue() == third.getvalue()


async def test_a_tampered_chunk_is_refused_in_one_sentence(lab: Lab) -> None:
    src = _code(lab.root / "odd", ODD_TREE)
    digest = (await lab.service.create_code_job(src, "sh run.sh", name="odd")
              ).version.source["snapshot"]

    def tamper(conn: Any) -> None:
        data = bytearray(conn.scalar(select(blob_chunks.c.data).where(
            blob_chunks.c.digest == digest, blob_chunks.c.n == 0)))
        data[1000] ^= 0x20  # inside a.txt, the first file's content
        conn.execute(update(blob_chunks).where(
            blob_chunks.c.digest == digest, blob_chunks.c.n == 0).values(data=bytes(data)))

    await lab.service._store.write(tamper)
    async with _machine(lab, "c") as c:
        with pytest.raises(BuildError) as caught:
            await c.ensure_snapshot(digest, "odd:v0")
        message = str(caught.value)
        assert message.startswith(
            f"job: the code snapshot '{digest[:12]}' of odd:v0 in the store does not match its "
            "digest (its files hash to '")
        assert message.endswith("'); it was not used.") and "\n" not in message
        # Nothing of it was put where builders look, and no temporary directory stayed.
        assert os.listdir(c.artifacts / "code") == []


def test_an_archive_that_is_not_a_snapshot_is_refused(tmp_path: Path) -> None:
    import tarfile

    def archive(name: str, add: Callable[[tarfile.TarFile], None]) -> Path:
        path = tmp_path / f"{name}.tar"
        with tarfile.open(path, "w") as tar:
            add(tar)
        return path

    def file(tar: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    def link(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("evil")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)

    cases = {
        "escape": (lambda t: file(t, "../evil"), "the member '../evil' is not a path inside"),
        "absolute": (lambda t: file(t, "/tmp/evil"), "is not a path inside the snapshot"),
        "link": (link, "the member 'evil' is not a regular file"),
        "twice": (lambda t: (file(t, "a"), file(t, "a")), "the member 'a' clashes"),
    }
    for name, (add, expected) in cases.items():
        with pytest.raises(ArchiveError, match=expected):
            unpack(archive(name, add), tmp_path / f"out-{name}")
    assert not (tmp_path / "evil").exists()
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ArchiveError, match="not a readable tar"):
        unpack(junk, tmp_path / "out-junk")


# ---------------------------------------------------------------- big snapshots


async def test_a_big_snapshot_is_stored_in_chunks_without_holding_up_heartbeats(
    lab: Lab, monkeypatch: pytest.MonkeyPatch,
) -> None:
    size = 20 * 1024 * 1024
    src = _code(lab.root / "big", {"train.py": "print('big')\n", "weights.bin": os.urandom(size)})
    await lab.service.register_agent("beater", [await lab.queue()])
    # Each chunk write is made slow (a busy disk), so the upload lasts long enough to
    # see whether control writes wait for all of it or only for the write in progress.
    writes: list[tuple[int, float]] = []
    started = threading.Event()
    first_write: list[float] = []
    put = blobs_db.put_chunks

    def slow_put(conn: Any, *args: Any) -> Any:
        if not started.is_set():
            first_write.append(time.monotonic())
            started.set()
        time.sleep(0.2)
        writes.append((len(args[-1]), time.monotonic()))
        return put(conn, *args)

    monkeypatch.setattr(blobs_db, "put_chunks", slow_put)
    create = asyncio.create_task(lab.service.create_code_job(src, "python train.py",
                                                             name="big"))
    assert await asyncio.to_thread(started.wait, 30)
    beats: list[tuple[float, float]] = []
    while not create.done():
        t0 = time.monotonic()
        await lab.service.agent_heartbeat("beater", AgentStatus.POLLING, 0)
        beats.append((t0, time.monotonic()))
        await asyncio.sleep(0.05)
    digest = (await create).version.source["snapshot"]
    finished = time.monotonic()

    chunks = -(-(size + 20_000) // snapshot_blobs.CHUNK)  # the tar adds headers and padding
    blob = await lab.service._store.read(blobs_db.status, digest)
    assert blob is not None and blob.complete and blob.chunks == chunks
    # Several bulk transactions of a few chunks each, not one of the whole snapshot.
    assert [n for n, _ in writes] == [snapshot_blobs.WRITE_CHUNKS] * (chunks // 4) + (
        [chunks % 4] if chunks % 4 else [])
    # Heartbeats went on while it was being written, each waiting for one chunk write
    # at most, not for the whole upload.
    during = [(t0, t1) for t0, t1 in beats if t1 < writes[-1][1]]
    assert len(during) >= 3, beats
    assert max(t1 - t0 for t0, t1 in beats) < 0.8, beats
    assert finished - first_write[0] > 0.2 * len(writes) >= 1.2  # the whole upload

    # It comes back whole on another machine.
    async with _machine(lab, "b") as b:
        assert await b.ensure_snapshot(digest, "big:v0")
        assert (b.artifacts / "code" / digest / "weights.bin").read_bytes() == (
            src / "weights.bin").read_bytes()


async def test_content_already_stored_is_not_uploaded_again(
    lab: Lab, monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = _code(lab.root / "src", {"train.py": "print(1)\n"})
    await lab.service.create_code_job(src, "python train.py", name="one")
    calls: list[str] = []
    put = blobs_db.put_chunks
    monkeypatch.setattr(blobs_db, "put_chunks", lambda conn, *a: calls.append(a[0]) or put(
        conn, *a))
    # Another job from the same files, and the same job again from another home.
    await lab.service.create_code_job(src, "python train.py", name="two")
    async with _machine(lab, "b") as b:
        await b.create_code_job(src, "python train.py", name="one")
    assert calls == []
    assert await _rows(lab.service) == (1, 1)


# ---------------------------------------------------------------- refused and leftover


async def test_a_refused_code_job_leaves_no_blob_and_no_files(lab: Lab) -> None:
    src = _code(lab.root / "src", {"train.py": "print(1)\n"})
    code = lab.home / "artifacts" / "code"
    await lab.service.create_git_job("https://github.com/x/y.git", "python t.py", name="g")
    # Refused inside the version's transaction, after the blob was uploaded.
    with pytest.raises(ValidationError, match="is a git job; a code job needs another name"):
        await lab.service.create_code_job(src, "python train.py", name="g")
    assert await _rows(lab.service) == (0, 0)
    assert not code.exists() or os.listdir(code) == []

    # Content a version already names is shared: a refused job never removes it.
    digest = (await lab.service.create_code_job(src, "python train.py", name="train")
              ).version.source["snapshot"]
    with pytest.raises(ValidationError, match="is a git job"):
        await lab.service.create_code_job(src, "python train.py", name="g")
    assert await _rows(lab.service) == (1, 1)
    assert os.listdir(code) == [digest]
    # Nor does taking back a blob that a version names.
    await lab.service._snapshots.forget(digest)
    assert await _rows(lab.service) == (1, 1)


async def test_a_job_whose_blob_vanished_before_its_commit_uploads_it_again(
    lab: Lab, monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = _code(lab.root / "src", {"train.py": "print(1)\n"})
    upload = snapshot_blobs.SnapshotBlobs.upload
    uploads = 0

    async def upload_then_lose(self: Any, staged: Any, receipt: Any) -> None:
        nonlocal uploads
        uploads += 1
        await upload(self, staged, receipt)
        if uploads == 1:  # another process's refused job takes the same content back
            await self._store.write(blobs_db.forget, staged.snapshot.digest)

    monkeypatch.setattr(snapshot_blobs.SnapshotBlobs, "upload", upload_then_lose)
    made = await lab.service.create_code_job(src, "python train.py", name="j")
    assert uploads == 2
    blob = await lab.service._store.read(blobs_db.status, made.version.source["snapshot"])
    assert blob is not None and blob.complete


async def test_gc_removes_blobs_no_version_names_once_they_are_an_hour_old(lab: Lab) -> None:
    src = _code(lab.root / "src", {"train.py": "print(1)\n"})
    kept = (await lab.service.create_code_job(src, "python train.py", name="j")
            ).version.source["snapshot"]
    now = lab.service._store.now()
    old, young = "a" * 64, "b" * 64
    for digest, at in ((old, now - 7200), (young, now - 60)):
        # Half-written uploads (a crash): 2 of 3 chunks.
        await lab.service._store.write(blobs_db.put_chunks, digest, 3 << 20, 3, at,
                                       [(0, b"x"), (1, b"y")])

    def age(conn: Any) -> None:  # even the version's blob is old: still named, so kept
        conn.execute(update(blobs).where(blobs.c.digest == kept).values(created_at=now - 7200))

    await lab.service._store.write(age)
    assert (await lab.service.prune(dry_run=True)).blobs == 1
    report = await lab.service.prune(batch=1)  # one chunk a batch: the deletes resume
    assert report.blobs == 1 and report.complete
    left = await lab.service._store.read(
        lambda conn: sorted(conn.scalars(select(blobs.c.digest))))
    assert left == sorted([kept, young])
    assert await lab.service._store.read(blobs_db.present_chunks, old) == set()
