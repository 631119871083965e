"""Waking on commits that other processes make to a PostgreSQL store: LISTEN/NOTIFY.

Every transaction that writes events ends with `NOTIFY launch_tui_events` (see
`eventlog.append`), which PostgreSQL delivers to listeners when it commits. One
listening connection per event loop and database, shared by every subscriber
in the process, wakes them; the change feed then reads the events table as it
would after a poll. While the connection is down (a restart of the server, a
network cut), `active` is False, the feed falls back to its short poll, and the
listener reconnects with back-off; on reconnecting it wakes everyone, since
notifications sent meanwhile are lost (the events are not: the feed reads by
sequence number).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Any

from launch_tui.core.store import pgparams
from launch_tui.core.store.eventlog import CHANNEL
from launch_tui.core.store.wake import Registry, SharedWake

log = logging.getLogger("launch_tui.store")

_BY_LOOP: Registry = weakref.WeakKeyDictionary()
_RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def conninfo(url: str) -> str:
    """The libpq connection string psycopg connects with, for a store URL: the URL's
    parameters (sslmode, connect_timeout, … in its query) and the store's defaults
    (`pgparams`); "launch-tui listen" is its name unless the URL or PGAPPNAME names one."""
    return pgparams.conninfo(url, fallback_name="launch-tui listen")


class PgListen(SharedWake):
    def __init__(self, loop: asyncio.AbstractEventLoop, url: str) -> None:
        super().__init__(loop)
        self._url = url
        self.active = False  # listening now: notifications will arrive
        self._task = loop.create_task(self._listen(), name="launch-store-listen")

    @classmethod
    def for_url(cls, url: str) -> PgListen:
        """The running loop's listener on `url`, started on first use."""
        return cls.shared(_BY_LOOP, url, lambda loop: cls(loop, url))

    def _close(self) -> None:
        self._task.cancel()

    async def _listen(self) -> None:
        import psycopg  # the PostgreSQL driver; only a PostgreSQL store gets here

        failures = 0
        while True:
            conn: Any = None
            try:
                conn = await psycopg.AsyncConnection.connect(conninfo(self._url),
                                                             autocommit=True)
                await conn.execute(f"LISTEN {CHANNEL}")
                self.active = True
                failures = 0
                self.wake_all()  # whatever committed while we were not listening
                async for _ in conn.notifies():
                    self.wake_all()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the feed polls meanwhile; say why once in a while
                log.debug("store: listening for changes failed (%s); retrying", exc)
            finally:
                self.active = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
            self.wake_all()  # subscribers switch to their poll now
            await asyncio.sleep(_RETRY_S[min(failures, len(_RETRY_S) - 1)])
            failures += 1
