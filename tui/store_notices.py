"""The store's warnings as notifications in the app.

The app owns the terminal, so what the store logs (a write that has waited long
for another process's lock, and which process holds it: core/store/writelock.py)
would reach no one. This handler shows each such warning as a notice. It may be
called from any thread (the lock watch has its own), so it hands the message to
the app's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

STORE_LOGGER = "launch_tui.store"


class StoreNotices(logging.Handler):
    def __init__(self, loop: asyncio.AbstractEventLoop, notify: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self._loop = loop
        self._notify = notify

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        with contextlib.suppress(RuntimeError):  # the app's loop has closed
            self._loop.call_soon_threadsafe(self._notify, message)


def install(loop: asyncio.AbstractEventLoop, notify: Callable[[str], None]) -> StoreNotices:
    handler = StoreNotices(loop, notify)
    logging.getLogger(STORE_LOGGER).addHandler(handler)
    return handler


def remove(handler: StoreNotices) -> None:
    logging.getLogger(STORE_LOGGER).removeHandler(handler)
