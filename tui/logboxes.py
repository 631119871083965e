"""Titled log boxes: a run's logs and the agents' own log lines, both following live.

Each box reads its lines through the service and then follows the change feed
(the app publishes every event batch on `app.event_batches`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical

from launch_tui.core import explain
from launch_tui.core.errors import LaunchError
from launch_tui.core.events import AgentLog, Event, RunLogAppended, RunStateChanged
from launch_tui.tui import format as fmt
from launch_tui.tui.widgets.findbar import FindBar
from launch_tui.tui.widgets.logview import LogView

if TYPE_CHECKING:
    from launch_tui.tui.app import LaunchApp

# Lines shown when a run is first opened; older ones stay in the store (`launch-tui logs`).
TAIL_LINES = 500
PAGE = 1000


class LogBox(Vertical):
    """A bordered LogView with a search bar; the title tells whether it is following."""

    LABEL = "Log"

    def __init__(self, *, id: str | None = None, empty_text: str = "no lines yet") -> None:
        super().__init__(id=id, classes="log-box")
        self.log_view = LogView(empty_text=empty_text, id=f"{id}-view" if id else None)
        self.find_bar = FindBar(self.log_view)
        self.subject = ""

    @property
    def launch_app(self) -> LaunchApp:
        return cast("LaunchApp", self.app)

    def compose(self) -> ComposeResult:
        yield self.log_view
        yield self.find_bar

    def on_mount(self) -> None:
        self.update_title()
        self.launch_app.event_batches.subscribe(self, self.on_events, immediate=True)

    def on_events(self, events: Sequence[Event]) -> None:
        """Override: react to a batch of change-feed events."""

    def on_log_view_state_changed(self, event: LogView.StateChanged) -> None:
        event.stop()
        self.update_title()

    def update_title(self) -> None:
        view = self.log_view
        title = self.LABEL + (f" · {self.subject}" if self.subject else "")
        if view.follow:
            state = "following"
        else:
            state = "paused" + (f" (+{view.unseen} new)" if view.unseen else "")
        self.border_title = title
        subtitle = state
        if view.search_term:
            found = view.match_count
            at = view.match_index + 1 if found else 0
            subtitle = f"/{view.search_term} {at}/{found} · {state}"
        self.border_subtitle = subtitle


class RunLogBox(LogBox):
    """One run's stdout, stderr and build lines, following new ones as they arrive."""

    LABEL = "Run log"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, empty_text="select a run to see its logs")
        self.run_id: str | None = None
        self._last_id = 0
        self._wake = asyncio.Event()
        self._reload = False

    def on_mount(self) -> None:
        super().on_mount()
        self._follow_loop()

    def show_run(self, run_id: str | None) -> None:
        if run_id == self.run_id:
            return
        self.run_id = run_id
        self.subject = run_id or ""
        self._reload = True
        self._wake.set()
        self.update_title()

    def on_events(self, events: Sequence[Event]) -> None:
        if self.run_id and any(
            isinstance(e, RunLogAppended) and e.run_id == self.run_id for e in events
        ):
            self._wake.set()
        if self.run_id and not self.log_view.lines and any(
            isinstance(e, RunStateChanged) and e.run_id == self.run_id for e in events
        ):
            self._say_why_empty(self.run_id)  # it ended without a line: say how

    @work(group="run-log-empty", exclusive=True, exit_on_error=False)
    async def _say_why_empty(self, run_id: str) -> None:
        text = await self._empty_text(run_id)
        if run_id == self.run_id and not self.log_view.lines:
            self.log_view.clear(text)

    async def _empty_text(self, run_id: str) -> str:
        """What an empty log says: still waiting for lines, or that the run ended
        without any and why (a run that failed at build never prints)."""
        app = self.launch_app
        run = app.model.runs.get(run_id) if app.model is not None else None
        if run is None and app.service is not None:
            try:
                run = await app.service.get_run(run_id)
            except LaunchError:
                return "no lines yet"
        if run is None or not run.state.terminal:
            return "no lines yet"
        why = explain.run_why(run, app.now())
        return f"no output; {why}" if why else f"no output; the run {run.state}"

    @work(exclusive=True, group="run-log", exit_on_error=False)
    async def _follow_loop(self) -> None:
        # One loop per box, so a run switch and new lines never race each other.
        while True:
            await self._wake.wait()
            self._wake.clear()
            service = self.launch_app.service
            if service is None:
                continue
            run_id = self.run_id
            try:
                if self._reload:
                    self._reload = False
                    self._last_id = 0
                    if run_id is None:
                        self.log_view.clear("select a run to see its logs")
                        continue
                    self.log_view.clear("loading…")
                    lines = await service.tail_logs(run_id, TAIL_LINES)
                    if not lines and run_id == self.run_id:
                        self.log_view.clear(await self._empty_text(run_id))
                else:
                    if run_id is None:
                        continue
                    lines = await service.run_logs(run_id, after=self._last_id, limit=PAGE)
                    if len(lines) == PAGE:
                        self._wake.set()  # more to read; go round again
            except LaunchError as exc:
                self.log_view.clear(str(exc))
                continue
            if run_id != self.run_id or self._reload:
                continue  # the user moved on while we read
            if lines:
                self._last_id = lines[-1].id
                self.log_view.write_lines(
                    fmt.log_line(line.ts, str(line.stream), line.text, line.source)
                    for line in lines
                )


class AgentLogBox(LogBox):
    """What the agents did: claims, builds, submissions and why something failed."""

    LABEL = "Agent log"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, empty_text="no agent has logged anything yet")
        self._loaded = False
        self._seq = 0  # newest line shown; the feed may replay a few the load already read

    async def load(self) -> None:
        service = self.launch_app.service
        if service is None:
            return
        try:
            logs = await service.agent_logs(limit=200)
        except LaunchError:
            return
        self.log_view.clear()
        self._loaded = True
        self._seq = max((e.seq for e in logs), default=0)
        self.log_view.write_lines(
            fmt.agent_line(e.ts, e.agent, e.level, e.message, e.run_id) for e in logs
        )

    def on_events(self, events: Sequence[Event]) -> None:
        if not self._loaded:
            return
        lines = [
            fmt.agent_line(e.ts, e.agent, e.level, e.message, e.run_id)
            for e in events
            if isinstance(e, AgentLog) and e.seq > self._seq
        ]
        if lines:
            self._seq = max(e.seq for e in events)
        self.log_view.write_lines(lines)
