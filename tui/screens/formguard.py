"""What the three forms (enqueue, queue, job config) share: escape on a form the user
changed asks before the changes go, and a save that works clears the error notices
an earlier attempt left (so an old "Not saved" never sits beside "created")."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.screen import ModalScreen
from textual.widgets import Input, Select, Switch, TextArea

from launch_tui.tui.screens.confirm import ConfirmScreen


def form_state(screen: ModalScreen[Any]) -> tuple[Any, ...]:
    """Every editor's value, by id and place: equal when nothing was changed."""
    state: list[Any] = []
    for widget in screen.query("Input, TextArea, Select, Switch"):
        if isinstance(widget, TextArea):
            value: Any = widget.text
        elif isinstance(widget, (Input, Select, Switch)):
            value = widget.value
        else:
            continue
        state.append((widget.id, str(value)))
    return tuple(state)


class GuardedForm(ModalScreen[str | None]):
    """A form screen whose escape asks first when something changed."""

    _initial: tuple[Any, ...] | None = None

    def remember_initial(self) -> None:
        """Call once the form shows its starting values."""
        self._initial = form_state(self)

    def changed(self) -> bool:
        return self._initial is not None and form_state(self) != self._initial

    def action_close(self) -> None:
        if not self.changed():
            self.dismiss(None)
            return
        self._confirm_discard()

    @work(group="discard", exclusive=True, exit_on_error=False)
    async def _confirm_discard(self) -> None:
        if await self.app.push_screen_wait(
                ConfirmScreen("Discard the changes to this form?", "Discard", "Keep editing")):
            self.dismiss(None)

    def saved(self, message: str | None) -> None:
        """Close after a successful save: earlier refusals' notices go with it."""
        self.app.clear_notifications()
        self.dismiss(message)
