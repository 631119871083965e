"""Checkpoints of an SQLite write-ahead log, on a thread of their own.

SQLite copies the WAL back into the database file every thousand pages or so,
on whichever connection commits then, and with synchronous=NORMAL that copy
ends in fsyncs: the writer would stall for milliseconds every few dozen
commits. The store's writer connection turns that off (wal_autocheckpoint=0)
and signals this thread every CHECKPOINT_EVERY commits instead; it runs a
PASSIVE checkpoint, which never blocks the writer or readers, on its own
connection. Other programs' connections keep SQLite's default.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("launch_tui.store")

CHECKPOINT_EVERY = 64  # commits (of a few dozen pages each) between checkpoints


class Checkpointer:
    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect  # -> a (pool-proxied) driver connection
        self._due = threading.Event()
        self._stop = False
        self._commits = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def committed(self) -> None:
        """Called by the writer after each commit."""
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY:
            self._commits = 0
            with self._lock:
                if self._thread is None:
                    self._stop = False
                    self._thread = threading.Thread(target=self._serve, daemon=True,
                                                    name="launch-store-checkpoint")
                    self._thread.start()
            self._due.set()

    def stop(self) -> threading.Thread | None:
        """Ask the thread to end (after a last checkpoint); return it, to join."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop = True
        self._due.set()
        return thread

    def _serve(self) -> None:
        conn = None
        try:
            while True:
                self._due.wait()
                self._due.clear()
                try:
                    if conn is None:
                        conn = self._connect()
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except Exception:
                    log.exception("store: checkpointing the write-ahead log failed")
                    with contextlib.suppress(Exception):
                        conn.close()  # type: ignore[union-attr]
                    conn = None
                if self._stop:
                    return
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
