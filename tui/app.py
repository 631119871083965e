"""The launch-tui Textual app.

The app opens the service inside its own event loop, loads a live model of the
current project and follows the change feed: one worker pumps `subscribe()`
into a queue, another applies whatever has arrived as one batch, so a burst of
events costs one model update. Every service call runs in a worker and a
`LaunchError` becomes a notification (or an inline message in a form), never a
crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.signal import Signal
from textual.worker import Worker, WorkerState

from launch_tui.core import explain
from launch_tui.core.errors import LaunchError
from launch_tui.core.events import Event
from launch_tui.core.model import Agent
from launch_tui.core.service import LaunchService
from launch_tui.core.store import writelock
from launch_tui.tui import format as fmt
from launch_tui.tui import hangup, store_notices
from launch_tui.tui.agent_host import AgentHost
from launch_tui.tui.commands import palette_commands
from launch_tui.tui.live import Change, LiveModel
from launch_tui.tui.screens.confirm import ConfirmScreen
from launch_tui.tui.screens.main import MainScreen
from launch_tui.tui.state import UiState

if TYPE_CHECKING:
    from launch_tui.tui.screens.enqueue import Prefill

T = TypeVar("T")
# Events handled per model update at most; a larger flood is split into batches.
MAX_BATCH = 5000
# How long stopping waits for the change-feed reader to unwind.
PUMP_STOP_S = 10.0


class LaunchApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "launch-tui"
    ENABLE_COMMAND_PALETTE = True

    # q quits from the main screen only (MainScreen binds it), so a stray q in a form
    # never closes the app; ctrl+q (Textual's own) quits from anywhere, asking first
    # when an agent runs here.
    BINDINGS = [
        Binding("question_mark", "help", "Keys", tooltip="Show every key and what it does",
                id="help"),
        # In raw mode Ctrl-Z is a key, not the terminal's suspend: bound here, it does
        # what a shell user expects (a focused text field keeps it for undo).
        Binding("ctrl+z", "suspend_process", "Suspend", show=False,
                tooltip="Back to the shell; fg returns to the app", id="suspend"),
    ]

    def __init__(
        self,
        store: str | None = None,
        home: str | Path | None = None,
        agent_queues: Sequence[str] = (),
        project: str | None = None,
        *,
        service: LaunchService | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.store = store
        self.home = home
        self.agent_queues = list(agent_queues)
        self.project = project
        self.clock = clock
        self.service: LaunchService | None = service
        self._owns_service = service is None
        self.model: LiveModel | None = None
        self.agent_host = AgentHost()
        self.ui_state = UiState(None)
        self.keymap: dict[str, str] = {}  # settings' [keys], as applied
        self.status_message = ""
        self.changes: Signal[Change] = Signal(self, "changes")
        self.event_batches: Signal[list[Event]] = Signal(self, "event-batches")
        self._shutdown_task: asyncio.Future[None] | None = None
        self._store_notices: store_notices.StoreNotices | None = None
        self._pump: asyncio.Task[None] | None = None

    def now(self) -> float:
        return self.clock()

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Textual's notify, with markup off by default: messages quote user input and
        rules (`'^[0-9]+[bkmgBKMG]?$'`) whose brackets markup would eat."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def get_default_screen(self) -> Screen[Any]:
        return MainScreen()

    # ------------------------------------------------------------------ lifecycle

    def on_mount(self) -> None:
        # NO_COLOR: attributes (bold, underline) take over where colour marked something.
        self.set_class(self.no_color, "-no-color")
        fmt.set_plain(self.no_color)
        if not self.is_headless:
            loop = asyncio.get_running_loop()
            hangup.watch(loop, self._hung_up)
            # `kill -TSTP` too stops the app the way Ctrl-Z does (Textual's own handler
            # would stop it at once, maybe inside a write). Textual's SIGCONT handler
            # is replaced too: it runs inside the signal and writes to the output
            # thread's queue, which is not reentrant, so a SIGCONT landing while the
            # app was drawing (the kernel sends one with the hang-up when the
            # terminal goes away) left the app deadlocked, never exiting. Through the
            # loop both are ordinary callbacks.
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                loop.add_signal_handler(signal.SIGTSTP, self.action_suspend_process)
                loop.add_signal_handler(signal.SIGCONT, self._continued)
        self._store_notices = store_notices.install(
            asyncio.get_running_loop(),
            lambda message: self.notify(message, title="Store", severity="warning", timeout=30))
        self._open()

    def action_suspend_process(self) -> None:
        """Ctrl-Z: give the terminal back to the shell and stop until `fg`, like any
        terminal program, but between the store's write transactions: stopped inside
        one, this process would stop every other writer of an SQLite store with it
        (core/store/writelock.py)."""
        driver = self._driver
        if self.is_headless or driver is None or not driver.can_suspend:
            return
        with writelock.between_transactions(), self.suspend():
            os.kill(os.getpid(), signal.SIGSTOP)
            # Here again after SIGCONT: the app redraws as the blocks end.

    def _continued(self) -> None:
        """SIGCONT. After the app's own Ctrl-Z, `suspend()` has given the terminal back
        already; after a stop by anyone else (kill -STOP) the screen is only redrawn."""
        self.refresh(layout=True)

    def _hung_up(self) -> None:
        """The terminal is gone (or SIGHUP/SIGTERM): stop the in-app agents the way q
        does, without asking (nobody can answer), and exit."""
        self._exit_on_hangup()

    @work(group="hangup", exclusive=True, exit_on_error=False)
    async def _exit_on_hangup(self) -> None:
        await self.shutdown()
        self.exit(return_code=129)

    @work(group="open", exclusive=True, exit_on_error=False)
    async def _open(self) -> None:
        try:
            if self.service is None:
                self.service = await LaunchService.open(store=self.store, home=self.home)
            service = self.service
            self.ui_state = UiState(service.settings.home)
            if service.settings.keys:
                self._apply_keymap(service.settings.keys)
            project = self.project or service.settings.default_project
            # Read the feed position first, so nothing between load and follow is missed.
            seq = await service.last_event_seq()
            self.model = LiveModel(service, project, self.changes.publish)
            await self.model.load()
        except LaunchError as exc:
            self.status_message = f"cannot open the store: {exc}"
            self.notify(str(exc), title="Store", severity="error", timeout=30)
            self._refresh_status()
            return
        self._follow(seq)
        if self.agent_queues:
            await self._start_agent(self.agent_queues)

    def _apply_keymap(self, keys: Mapping[str, str]) -> None:
        """Rebind keys from settings.toml's `[keys]`; a name the app does not know, or
        a key taken from another where both work, is one warning each (the rest apply)."""
        from launch_tui.tui.commands import check_keymap

        usable, problems = check_keymap(keys)
        self.keymap = usable
        self.set_keymap(usable)
        for problem in problems:
            self.notify(problem, title="Settings", severity="warning", timeout=20)

    @work(group="feed", exclusive=True, exit_on_error=False)
    async def _follow(self, after: int) -> None:
        service = self.service
        model = self.model
        if service is None or model is None:
            return
        inbox: asyncio.Queue[Event] = asyncio.Queue()
        stopped = False

        async def pump() -> None:
            position = after
            while not stopped:
                try:
                    async for event in service.subscribe(after=position):
                        if stopped:
                            # A cancel the feed swallowed still ends us at the next event.
                            return
                        position = event.seq
                        inbox.put_nowait(event)
                    return  # the service was closed
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a store hiccup must not end live updates
                    self.notify(f"Live updates paused: {exc}; retrying.", severity="warning")
                    await asyncio.sleep(2.0)

        pumping = asyncio.create_task(pump(), name="launch-tui-feed")
        self._pump = pumping
        try:
            while True:
                first = await inbox.get()
                batch = [first]
                while not inbox.empty() and len(batch) < MAX_BATCH:
                    batch.append(inbox.get_nowait())
                try:
                    await model.apply(batch)
                except Exception as exc:
                    # One bad batch costs its changes (ctrl+r reloads), not the feed.
                    message = str(exc) if isinstance(exc, LaunchError) else repr(exc)
                    self.notify(f"Live updates: {message}", severity="error")
                self.event_batches.publish(batch)
        finally:
            stopped = True
            pumping.cancel()
            # Let a read it was in the middle of unwind (a slow machine can take a
            # while), so no query is left running when the store closes; but never hang.
            await asyncio.wait({pumping}, timeout=PUMP_STOP_S)

    def _refresh_status(self) -> None:
        main = self.main_screen()
        if main is not None:
            main.update_status()

    async def on_unmount(self) -> None:
        if self._store_notices is not None:
            store_notices.remove(self._store_notices)
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop in-process agents, then close the store (only if this app opened it).

        One shielded task does it, so a quit worker cancelled halfway (the app is
        exiting) and the unmount handler both wait for the same, whole shutdown.
        """
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.ensure_future(self._stop_and_close())
        await asyncio.shield(self._shutdown_task)

    async def _stop_and_close(self) -> None:
        with contextlib.suppress(Exception):
            await self.agent_host.stop_all()  # bounded by the host's stop timeout
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
            await asyncio.wait({self._pump}, timeout=PUMP_STOP_S)
        if self.service is not None and self._owns_service:
            with contextlib.suppress(Exception):
                await self.service.close()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # exit_on_error=False keeps the app alive; still tell the user what broke.
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            message = str(error) if isinstance(error, LaunchError) else repr(error)
            self.notify(message, title="Error", severity="error", timeout=10)

    # ------------------------------------------------------------------ helpers

    async def call(self, awaitable: Awaitable[T], title: str = "Error") -> T | None:
        """Await a service call; a LaunchError becomes a notification and None."""
        try:
            return await awaitable
        except LaunchError as exc:
            self.notify(str(exc), title=title, severity="error", timeout=8)
            return None

    def main_screen(self) -> MainScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        return None

    def serving_agents(self, queue: str) -> list[Agent]:
        """The live agents of the project that serve `queue` (by the core's rule)."""
        model = self.model
        if model is None or self.service is None:
            return []
        return list(explain.serving(model.agents.values(), model.project, queue, self.now(),
                                    self.service.settings.agent_stale_s).alive)

    def default_queue(self, job: str | None = None) -> str | None:
        """The queue an enqueue form starts on, so that `e`, `ctrl+s` never lands quietly
        where nothing runs: the job's last queue if a live agent serves it, else a queue
        a live agent serves (this app's own first), else the first queue."""
        model = self.model
        if model is None or not model.queue_names:
            return None
        last = self.ui_state.queue_of(model.project, job) if job else None
        if last in model.queues and self.serving_agents(str(last)):
            return last
        mine = [q for q in self.agent_host.served_queues() if q in model.queues]
        served = [q for q in model.queue_names if self.serving_agents(q)]
        for queue in (*mine, *served):
            if self.serving_agents(queue):
                return queue
        return model.queue_names[0]

    def remember_queue(self, job: str, queue: str) -> None:
        if self.model is not None:
            self.ui_state.remember_queue(self.model.project, job, queue)

    # ------------------------------------------------------------------ actions

    async def action_quit(self) -> None:
        names = self.agent_host.names()
        if names:
            self._confirm_quit(names)
            return
        await self.shutdown()
        self.exit()

    @work(group="quit", exclusive=True, exit_on_error=False)
    async def _confirm_quit(self, names: list[str]) -> None:
        question = f"Stop the agent {', '.join(names)} and quit? Its runs keep going."
        if await self.push_screen_wait(ConfirmScreen(question, "Quit", "Stay")):
            await self.shutdown()
            self.exit()

    def action_help(self) -> None:
        from launch_tui.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from palette_commands(self, screen)
        yield from super().get_system_commands(screen)

    def open_enqueue(self, job: str, prefill: Prefill | None = None) -> None:
        from launch_tui.tui.screens.enqueue import EnqueueScreen

        if self.model is None or job not in self.model.jobs:
            self.notify(f"Job '{job}' is not known.", severity="warning")
            return
        self.push_screen(EnqueueScreen(job, prefill=prefill), self._enqueued)

    def _enqueued(self, message: str | None) -> None:
        if message:
            self.notify(message, title="Enqueued")

    @work(group="requeue", exclusive=True, exit_on_error=False)
    async def open_requeue(self, run_id: str) -> None:
        from launch_tui.tui.screens.enqueue import Prefill

        if self.service is None:
            return
        run = await self.call(self.service.get_run(run_id))
        if run is None:
            return
        item = await self.call(self.service.get_item(run.item_id))
        if item is None:
            return
        self.open_enqueue(item.job, Prefill.from_item(item, run))

    def open_config_form(self, job: str) -> None:
        from launch_tui.tui.screens.config import ConfigScreen

        self.push_screen(ConfigScreen(job), self._notify_result)

    def open_queue_form(self, queue: str | None) -> None:
        from launch_tui.tui.screens.queue import QueueScreen

        self.push_screen(QueueScreen(queue), self._notify_result)

    def _notify_result(self, message: str | None) -> None:
        if message:
            self.notify(message)

    @work(group="editor", exclusive=True, exit_on_error=False)
    async def edit_config_in_editor(self, job: str) -> None:
        from launch_tui.tui.editor import edit_job_config

        message = await edit_job_config(self, job)
        if message:
            self.notify(message)

    @work(group="editor", exclusive=True, exit_on_error=False)
    async def edit_queue_in_editor(self, queue: str) -> None:
        from launch_tui.tui.editor import edit_queue_config

        message = await edit_queue_config(self, queue)
        if message:
            self.notify(message)

    def open_run(self, run_id: str) -> None:
        from launch_tui.tui.screens.run import RunScreen

        self.push_screen(RunScreen(run_id))

    async def cancel(self, target: str) -> bool:
        if self.service is None:
            return False
        done = await self.call(self.service.cancel(target), title="Cancel")
        if done:
            self.notify(done.capitalize() + ".", title="Cancel")
        return done is not None

    def start_agent(self, queues: Sequence[str]) -> None:
        self._start_agent_worker(list(queues))

    @work(group="agent", exclusive=False, exit_on_error=False)
    async def _start_agent_worker(self, queues: list[str]) -> None:
        await self._start_agent(queues)

    async def _start_agent(self, queues: Sequence[str]) -> None:
        if self.service is None:
            return
        project = self.model.project if self.model else self.project
        name = await self.call(self.agent_host.start(self.service, queues, project), "Agent")
        if name:
            self.notify(f"Agent {name} started on {', '.join(queues)}.", title="Agent")
        self._refresh_status()

    @work(group="agent-stop", exclusive=True, exit_on_error=False)
    async def stop_agent(self, name: str) -> None:
        question = f"Stop the agent {name}? Runs it started keep going on their backend."
        if not await self.push_screen_wait(ConfirmScreen(question, "Stop it", "Keep it")):
            return
        try:
            await self.agent_host.stop(name)
        except LaunchError as exc:
            self.notify(str(exc), title="Agent", severity="error")
        else:
            self.notify(f"Agent {name} stopped.", title="Agent")
        self._refresh_status()

    def switch_project(self, project: str) -> None:
        if self.model is not None and project != self.model.project:
            self.project = project
            self.reload()

    @work(group="open", exclusive=True, exit_on_error=False)
    async def reload(self) -> None:
        if self.service is None:
            return
        service = self.service
        project = self.project or service.settings.default_project
        seq = await service.last_event_seq()
        model = LiveModel(service, project, self.changes.publish)
        self.model = model
        await self.call(model.load())
        self._follow(seq)


def run_app(
    store: str | None = None,
    home: str | None = None,
    agent_queues: list[str] | None = None,
    project: str | None = None,
) -> None:
    """Entry point used by `launch-tui` (no subcommand) and `launch-tui demo`. Exits
    with status 129 (128 + SIGHUP) when the terminal went away."""
    app = LaunchApp(store=store, home=home, agent_queues=agent_queues or [], project=project)
    app.run()
    if app.return_code:
        raise SystemExit(app.return_code)
