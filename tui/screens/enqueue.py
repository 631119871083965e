from textual.screen import Screen


class EnqueueScreen(Screen[None]):
    BINDINGS = []


class Prefill:
    pass
