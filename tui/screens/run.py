"""Run detail: status timeline with stage durations, exit and error, metrics, logs.

Everything follows the change feed: state changes repaint the timeline, new
log lines scroll in (unless paused), new metrics redraw their sparklines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Label, Sparkline, Static

from launch_tui.core import explain
from launch_tui.core.errors import LaunchError
from launch_tui.core.events import Event, RunMetricsLogged
from launch_tui.core.model import MetricRecord, Run, RunState
from launch_tui.tui import format as fmt
from launch_tui.tui.live import Change
from launch_tui.tui.logboxes import RunLogBox
from launch_tui.tui.screens.confirm import ConfirmScreen
from launch_tui.tui.widgets.footer import KeysFooter

if TYPE_CHECKING:
    from launch_tui.tui.app import LaunchApp


def timeline(run: Run, now: float) -> Table:
    """Each stage the run entered, when, and how long it lasted (the current one ticks)."""
    durations = fmt.stage_durations(run.timestamps, run.state, now)
    table = Table.grid(padding=(0, 2))
    table.add_column("stage", style="bold")
    table.add_column("at", style="dim")
    table.add_column("took", justify="right")
    for name, ts in sorted(run.timestamps.items(), key=lambda p: p[1]):
        label: Text | str = name
        if name == str(run.state):
            label = fmt.run_state(run.state) if name in RunState._value2member_map_ else name
        took = fmt.duration(durations.get(name))
        if name == str(run.state) and not run.state.terminal:
            took += " …"
        table.add_row(label, fmt.clock(ts), took)
    return table


def timeline_flow(run: Run, now: float) -> Text:
    """The same timeline in one wrapped line, for narrow terminals."""
    durations = fmt.stage_durations(run.timestamps, run.state, now)
    text = Text()
    for i, (name, _) in enumerate(sorted(run.timestamps.items(), key=lambda p: p[1])):
        if i:
            text.append(" → ", style="dim")
        if name == str(run.state):
            text.append_text(fmt.run_state(run.state))
        else:
            text.append(name, style="bold")
        took = durations.get(name)
        if took is not None:
            text.append(f" {fmt.duration(took)}" + ("…" if name == str(run.state) else ""))
    return text


def facts(run: Run) -> Group:
    head = Text()
    head.append_text(fmt.run_state(run.state))
    if run.exit_code is not None:
        head.append(f"  exit {run.exit_code}", style="bold")
    lines: list[Text] = [head]
    if run.error_stage or run.error_message:
        error = Text(f"error at {run.error_stage or '?'}: ", style=fmt.style_of("bold red"))
        error.append(run.error_message or "", style=fmt.style_of("red"))
        lines.append(error)
    if run.reason and run.reason != run.error_message:
        lines.append(Text(f"reason: {run.reason}", style="italic"))
    why = explain.run_why(run, 0.0)
    if why and not run.state.terminal:
        lines.append(Text(f"why: {why}", style="italic"))
    lines.append(Text(f"{run.job_ref} on {run.queue} · item #{run.item_id} · agent "
                      f"{run.agent or '-'}", style="dim"))
    return Group(*lines)


class MetricsPanel(VerticalScroll):
    """One sparkline per metric the run reported, with its latest value."""

    def show(self, records: Sequence[MetricRecord]) -> None:
        series: dict[str, list[float]] = {}
        for record in records:
            for key, value in record.values.items():
                series.setdefault(key, []).append(value)
        self.border_title = f"Metrics ({len(records)} steps)" if records else "Metrics"
        existing = {row.metric: row for row in self.query(MetricRow)}
        if not series:
            if not self.query("#no-metrics"):
                self.mount(Static("no metrics reported", id="no-metrics", classes="muted"))
            return
        for empty in self.query("#no-metrics"):
            empty.remove()
        for key in sorted(series):
            if key in existing:
                existing[key].update(series[key])
            else:
                self.mount(MetricRow(key, series[key]))


class MetricRow(Horizontal):
    def __init__(self, metric: str, values: list[float]) -> None:
        super().__init__(classes="metric-row")
        self.metric = metric
        self._values = values

    def compose(self) -> ComposeResult:
        yield Label(self._label(), classes="metric-label")
        yield Sparkline(self._values, summary_function=max, classes="metric-spark")

    def _label(self) -> str:
        values = self._values
        # Two short lines beside a two-line sparkline: name, then last (min..max).
        if not values:
            return self.metric
        return f"{self.metric}\n{values[-1]:.4g} ({min(values):.3g}..{max(values):.3g})"

    def update(self, values: list[float]) -> None:
        self._values = values
        self.query_one(Label).update(self._label())
        self.query_one(Sparkline).data = values


class RunScreen(Screen[None]):
    BINDINGS = [
        Binding("escape,backspace,q", "back", "Back", tooltip="Back to the main screen", id="back"),
        Binding("x,delete", "cancel_run", "Cancel run", tooltip="Cancel this run (asks first)",
                id="cancel_run"),
        Binding("r", "requeue", "Re-enqueue",
                tooltip="Open the enqueue form prefilled from this run, to fix and resubmit",
                id="requeue"),
        Binding("f", "toggle_follow", "Follow", tooltip="Pause or resume following the log",
                id="toggle_follow"),
        Binding("slash", "search", "Search log", tooltip="Search within the log", id="search"),
    ]

    def __init__(self, run_id: str) -> None:
        super().__init__(classes="run-screen")
        self.run_id = run_id
        self.run: Run | None = None

    @property
    def launch_app(self) -> LaunchApp:
        return cast("LaunchApp", self.app)

    def compose(self) -> ComposeResult:
        yield Static(f" Run {self.run_id}", id="run-title")
        with Horizontal(id="run-top"):
            # Scrolls (tab focuses it, then arrows / page keys) when a long error and
            # timeline do not fit a short terminal.
            with VerticalScroll(id="run-status") as status:
                status.border_title = "Status"
                yield Static("loading…", id="run-facts")
                yield Static("", id="run-timeline")
            yield MetricsPanel(id="run-metrics")
        yield RunLogBox(id="run-detail-log")
        yield KeysFooter()

    def on_mount(self) -> None:
        app = self.launch_app
        app.changes.subscribe(self, self._on_change, immediate=True)
        app.event_batches.subscribe(self, self._on_events, immediate=True)
        log = self.query_one(RunLogBox)
        log.show_run(self.run_id)
        self.call_after_refresh(log.log_view.focus)
        self.set_interval(1.0, self._tick)
        self._load()
        self._load_metrics()

    @work(group="run-load", exclusive=True, exit_on_error=False)
    async def _load(self) -> None:
        service = self.launch_app.service
        if service is None:
            return
        try:
            self.run = await service.get_run(self.run_id)
        except LaunchError as exc:
            message = Text(str(exc), style=fmt.style_of("bold red"))
            self.query_one("#run-facts", Static).update(message)
            return
        self._render_run()

    @work(group="run-metrics", exclusive=True, exit_on_error=False)
    async def _load_metrics(self) -> None:
        service = self.launch_app.service
        if service is None:
            return
        try:
            records = await service.run_metrics(self.run_id)
        except LaunchError:
            return
        self.query_one(MetricsPanel).show(records)

    def _on_change(self, change: Change) -> None:
        model = self.launch_app.model
        if change.kind in ("run", "runs") and model is not None:
            run = model.runs.get(self.run_id)
            if run is not None and run != self.run:
                self.run = run
                self._render_run()

    def _on_events(self, events: Sequence[Event]) -> None:
        if any(isinstance(e, RunMetricsLogged) and e.run_id == self.run_id for e in events):
            self._load_metrics()

    def _tick(self) -> None:
        if self.run is not None and not self.run.state.terminal:
            self._render_run()

    def _render_run(self) -> None:
        run = self.run
        if run is None:
            return
        title = Text(f" Run {run.id} ", style="bold reverse")
        title.append(f"  {run.job_ref} → {run.queue}  ")
        title.append_text(fmt.run_state(run.state))
        self.query_one("#run-title", Static).update(title)
        self.query_one("#run-facts", Static).update(facts(run))
        now = self.launch_app.now()
        narrow = self.size.width < 100
        self.query_one("#run-timeline", Static).update(
            timeline_flow(run, now) if narrow else timeline(run, now))

    # ------------------------------------------------------------------ actions

    def action_back(self) -> None:
        self.dismiss(None)

    def action_toggle_follow(self) -> None:
        self.query_one(RunLogBox).log_view.toggle_follow()

    def action_search(self) -> None:
        self.query_one(RunLogBox).find_bar.open()

    def action_requeue(self) -> None:
        self.launch_app.open_requeue(self.run_id)

    def action_cancel_run(self) -> None:
        run = self.run
        if run is not None and (run.state.terminal or run.state == RunState.STOPPING):
            self.notify(f"Run {run.id} is already {run.state}.", severity="warning")
            return
        self._confirm_cancel()

    @work(group="confirm", exit_on_error=False)
    async def _confirm_cancel(self) -> None:
        what = f"{self.run.job_ref}, {self.run.state}" if self.run else "run"
        question = f"Cancel run {self.run_id} ({what})?"
        if await self.app.push_screen_wait(ConfirmScreen(question, "Cancel it", "Keep it")):
            await self.launch_app.cancel(self.run_id)
