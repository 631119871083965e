"""Every key binding, gathered once for the help screen and the command palette.

Bindings are declared where they act (app, screens, panes, widgets); this
module walks those declarations, so help and palette can never disagree with
the keys that actually work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.binding import Binding
from textual.keys import _normalize_key_list  # what App.set_keymap applies to its keys
from textual.screen import Screen

if TYPE_CHECKING:
    from textual.app import App, SystemCommand


@dataclass(frozen=True)
class KeyRow:
    section: str
    keys: tuple[str, ...]
    description: str
    action: str
    owner: type[Any]
    id: str = ""  # the name `[keys]` in settings.toml rebinds it by


def _bindings(cls: type[Any]) -> Iterator[Binding]:
    for entry in cls.__dict__.get("BINDINGS", []):
        if isinstance(entry, Binding):
            yield entry
        else:
            key, action, *rest = entry
            yield Binding(key, action, rest[0] if rest else "")


def sections() -> list[tuple[str, type[Any]]]:
    """(title, class) for every place that declares keys, in the order help shows them."""
    from launch_tui.tui.app import LaunchApp
    from launch_tui.tui.panes import PANES
    from launch_tui.tui.screens.config import ConfigScreen
    from launch_tui.tui.screens.confirm import ConfirmScreen
    from launch_tui.tui.screens.enqueue import EnqueueScreen
    from launch_tui.tui.screens.help import HelpScreen
    from launch_tui.tui.screens.main import MainScreen
    from launch_tui.tui.screens.queue import QueueScreen
    from launch_tui.tui.screens.run import RunScreen
    from launch_tui.tui.widgets.findbar import FindBar
    from launch_tui.tui.widgets.logview import LogView
    from launch_tui.tui.widgets.table import LiveTable

    out: list[tuple[str, type[Any]]] = [
        ("Anywhere", LaunchApp),
        ("Main screen", MainScreen),
    ]
    out += [(f"{pane.TITLE} pane", pane) for pane in PANES]
    out += [
        ("Any list", LiveTable),
        ("Logs", LogView),
        ("Filter / search bar", FindBar),
        ("Run detail", RunScreen),
        ("Enqueue form", EnqueueScreen),
        ("Config form", ConfigScreen),
        ("Queue form", QueueScreen),
        ("Confirmation", ConfirmScreen),
        ("Help", HelpScreen),
    ]
    return out


def key_rows(keymap: Mapping[str, str] | None = None) -> list[KeyRow]:
    """Every key row; `keymap` (binding id -> "key,key") replaces the declared keys the
    way Textual's keymap does, so help shows the keys that work."""
    from launch_tui.tui.app import LaunchApp

    keymap = keymap or {}

    rows = [
        KeyRow("Anywhere", ("ctrl+p",), "Command palette: every action by name", "command_palette",
               object),
        # Textual's own binding; the app's quit action asks first when an agent runs here.
        KeyRow("Anywhere", ("ctrl+q",), "Quit from any screen", "quit", LaunchApp),
    ]
    for section, cls in sections():
        for binding in _bindings(cls):
            keys_text = keymap.get(binding.id or "", binding.key)
            keys = tuple(k.strip() for k in keys_text.split(","))
            # The footer shows the short description; help and palette the full sentence.
            text = binding.tooltip or binding.description
            rows.append(KeyRow(section, keys, text, binding.action, cls, binding.id or ""))
    return rows


def binding_ids() -> set[str]:
    """The names `[keys]` accepts: every binding id the app declares."""
    return {row.id for row in key_rows() if row.id}


def check_keymap(keymap: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Split a `[keys]` table into what can be applied and one sentence per problem:
    a name that is no binding id, or a rebound key that clashes with another where
    both would work: in one place (the rebinding wins there), or between a pane or
    widget and the screen under it (the pane wins while it has focus)."""
    from launch_tui.tui.app import LaunchApp
    from launch_tui.tui.panes import PANES
    from launch_tui.tui.screens.main import MainScreen
    from launch_tui.tui.widgets.logview import LogView
    from launch_tui.tui.widgets.table import LiveTable

    known = binding_ids()
    # "?" and "question_mark" are one key: compare (and apply) Textual's long names.
    usable = {name: _normalize_key_list(keys) for name, keys in keymap.items() if name in known}
    problems = [
        f"settings: keys.{name} is not a key name of this app (the names are listed by "
        f"? in the app; for example {', '.join(sorted(known)[:4])})."
        for name in keymap if name not in known
    ]

    def clash(key: str, mine: str, other: str, winner: str, place: str) -> None:
        if mine in usable or other in usable:
            rebound, lost = (mine, other) if mine in usable else (other, mine)
            problems.append(f"settings: keys.{rebound} = {key!r} clashes with {lost} "
                            f"{place}, where {key} does {winner}.")

    titles = dict((cls, section) for section, cls in sections())
    on_main = {*PANES, LiveTable, LogView}  # focused inside the main screen
    for section, cls in sections():
        taken: dict[str, str] = {}  # key -> binding id in this place, after the keymap
        for binding in _bindings(cls):
            keys = usable.get(binding.id or "", binding.key)
            for key in (k.strip() for k in keys.split(",")):
                other = taken.get(key)
                if other is not None and other != binding.id:
                    rebound = binding.id if binding.id in usable else other
                    clash(key, binding.id or "", other, rebound, f"({section})")
                taken[key] = binding.id or ""
        below = [MainScreen, LaunchApp] if cls in on_main else (
            [] if cls is LaunchApp else [LaunchApp])
        for lower in below:
            for key, low_id in _keys(lower, usable).items():
                my_id = taken.get(key)
                if my_id is not None and my_id != low_id:
                    under = "app-wide keys" if lower is LaunchApp else titles[lower].lower()
                    clash(key, my_id, low_id, my_id, f"(the {section} over the {under})")
    return usable, problems


def _keys(cls: type[Any], usable: Mapping[str, str]) -> dict[str, str]:
    """Key -> binding id of what `cls` declares, after the keymap."""
    out: dict[str, str] = {}
    for binding in _bindings(cls):
        for key in usable.get(binding.id or "", binding.key).split(","):
            out.setdefault(key.strip(), binding.id or "")
    return out


def key_display(app: App[Any], key: str) -> str:
    return app.get_key_display(Binding(key, "", ""))


def _runner(app: App[Any], screen: Screen[Any], row: KeyRow) -> Callable[[], Any] | None:
    """How to run a row's action from the palette on `screen`, or None if it does not apply."""
    from launch_tui.tui.app import LaunchApp
    from launch_tui.tui.panes import PANES
    from launch_tui.tui.screens.main import MainScreen

    action = row.action
    if row.owner is LaunchApp:
        return partial(app.run_action, action)
    if isinstance(screen, MainScreen) and (row.owner is MainScreen or row.owner in PANES):
        return partial(screen.run_action, action.removeprefix("screen."))
    if row.owner is type(screen) and isinstance(screen, Screen):
        return partial(screen.run_action, action.removeprefix("screen."))
    return None


def palette_commands(app: App[Any], screen: Screen[Any]) -> Iterable[SystemCommand]:
    from textual.app import SystemCommand

    seen: set[str] = set()
    for row in key_rows():
        runner = _runner(app, screen, row)
        if runner is None or row.description in seen:
            continue
        seen.add(row.description)
        keys = " or ".join(key_display(app, k) for k in row.keys)
        yield SystemCommand(row.description, f"{row.section} · key {keys}", runner)
