"""Runs that end while the user looks elsewhere raise a notice; settings tune them."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from pathlib import Path

import pytest

from launch_tui.core.errors import ValidationError
from launch_tui.core.model import ErrorStage, RunState
from launch_tui.core.service import LaunchService
from launch_tui.core.settings import load_settings
from launch_tui.core.store.engine import writer_lock_path
from launch_tui.tui.demo import Demo
from tests.tui.conftest import make_app, notices, wait_for_notice, wait_loaded, wait_until


async def _run(service: LaunchService) -> str:
    await service.enqueue("train", "local")
    run = (await service.claim_run("vm-1", ["local"])).run
    assert run is not None
    return run.id


async def test_a_failed_and_a_finished_run_raise_notices(
        service: LaunchService, world: Demo) -> None:
    failing, finishing = await _run(service), await _run(service)
    app = make_app(service)
    rang: list[bool] = []
    app.bell = lambda: rang.append(True)  # type: ignore[method-assign]
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await service.set_run_state(failing, RunState.FAILED, error_stage=ErrorStage.BUILD,
                                    error_message="pip could not find torch==9.9")
        await wait_for_notice(pilot, f"{failing} (train:v0 on local): failed at build: pip "
                                     "could not find torch==9.9")
        await service.set_run_state(finishing, RunState.RUNNING)
        await service.set_run_state(finishing, RunState.FINISHED, exit_code=0)
        await wait_for_notice(pilot, f"{finishing} (train:v0 on local) finished in")
        assert rang == []  # the bell is opt-in


async def test_no_notice_for_the_run_under_the_cursor(
        service: LaunchService, world: Demo) -> None:
    elsewhere = await _run(service)
    run_id = await _run(service)  # the newest: under the Runs cursor
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("4")
        await wait_until(pilot, lambda: app.screen.selected_run() == run_id,  # type: ignore[attr-defined]
                         "the run under the cursor")
        await service.set_run_state(run_id, RunState.FAILED, exit_code=1, error_message="boom")
        # The feed is in order: once the later failure's notice is up, the app has
        # decided about this one.
        await service.set_run_state(elsewhere, RunState.FAILED, exit_code=1,
                                    error_message="bang")
        await wait_for_notice(pilot, f"{elsewhere} (train:v0 on local): failed (exit code "
                                     "1): bang")
        assert not any(run_id in n for n in notices(app))


async def test_settings_turn_finished_notices_off_and_the_bell_on(
        home: Path, world: Demo, service: LaunchService) -> None:
    (home / "settings.toml").write_text("[tui]\nnotify_finished = false\n"
                                        "bell_on_failure = true\n")
    svc = await LaunchService.open(home=home)
    try:
        finishing, failing = await _run(svc), await _run(svc)
        app = make_app(svc)
        rang: list[bool] = []
        app.bell = lambda: rang.append(True)  # type: ignore[method-assign]
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_loaded(pilot)
            await svc.set_run_state(finishing, RunState.FINISHED, exit_code=0)
            await svc.set_run_state(failing, RunState.CRASHED, reason="its agent died")
            await wait_for_notice(pilot, "crashed: its agent died")
            assert rang == [True]
            assert not any("finished in" in n for n in notices(app))
    finally:
        await svc.close()


@pytest.mark.parametrize(("text", "message"), [
    ("[tui]\nnotify_finished = 3\n", "settings: tui.notify_finished must be true or false "
                                     "(got 3)."),
    ("[tui]\nbeep = true\n", "settings: tui.beep is not a tui setting (known: "
                             "bell_on_failure, notify_finished)."),
    ("[keys]\nenqueue = \"\"\n", "settings: keys.enqueue must be key names joined by commas, "
                                 "such as \"e\" or \"ctrl+e,f5\" (got '')."),
    ("[keys]\nenqueue = 5\n", "settings: keys.enqueue must be key names joined by commas, "
                              "such as \"e\" or \"ctrl+e,f5\" (got 5)."),
])
def test_bad_tui_settings_are_one_sentence(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "settings.toml").write_text(text)
    with pytest.raises(ValidationError) as err:
        load_settings(tmp_path)
    assert str(err.value) == message


@pytest.mark.sqlite_only  # the writers' file lock is SQLite's
async def test_a_write_waiting_for_another_process_lock_is_a_notice(
        service: LaunchService, world: Demo) -> None:
    """The store's warning that a write waits for the lock (and who holds it) would go
    to a terminal the app owns; it is shown as a notice instead. Here this process
    holds the lock through a second descriptor, as another process would."""
    path = writer_lock_path(service._store.url)
    assert path is not None
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            writing = asyncio.ensure_future(service.create_queue("late", "local-process"))
            await wait_for_notice(pilot, "store: a write has waited 5s for the store's write "
                                         f"lock ({path}): process {os.getpid()} (", within=30)
            assert not writing.done()
        finally:
            os.close(fd)
        await asyncio.wait_for(writing, 10)
    assert app._store_notices is not None
    assert app._store_notices not in logging.getLogger("launch_tui.store").handlers
