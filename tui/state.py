"""What the TUI remembers between sessions: the last queue used per job of a project.

Kept beside the store in the launch-tui home, as a tiny JSON file the app owns.
"""

from __future__ import annotations

import json
from pathlib import Path

FILE_NAME = "tui-state.json"


class UiState:
    def __init__(self, home: Path | None) -> None:
        self.path = home / FILE_NAME if home is not None else None
        self.last_queue: dict[str, str] = {}
        if self.path is not None and self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                self.last_queue = {str(k): str(v) for k, v in data.get("last_queue", {}).items()}
            except (OSError, ValueError, AttributeError):
                # A damaged state file only costs the remembered queue.
                self.last_queue = {}

    @staticmethod
    def key(project: str, job: str) -> str:
        return f"{project}/{job}"

    def queue_of(self, project: str, job: str) -> str | None:
        return self.last_queue.get(self.key(project, job))

    def remember_queue(self, project: str, job: str, queue: str) -> None:
        self.last_queue[self.key(project, job)] = queue
        if self.path is None:
            return
        try:
            self.path.write_text(json.dumps({"last_queue": self.last_queue}, indent=1))
        except OSError:
            pass
