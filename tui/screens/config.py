from textual.screen import Screen


class ConfigScreen(Screen[None]):
    BINDINGS = []
