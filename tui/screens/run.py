from textual.screen import Screen


class RunScreen(Screen[None]):
    BINDINGS = []
