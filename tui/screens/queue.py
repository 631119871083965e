from textual.screen import Screen


class QueueScreen(Screen[None]):
    BINDINGS = []
