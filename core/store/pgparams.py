"""How the store connects to PostgreSQL: the libpq parameters of its URL, and the few
defaults launch-tui adds to them.

Any libpq connection parameter may stand in the URL's query string
(`postgresql://me@db.example/launch?sslmode=verify-full&sslrootcert=/etc/ca.pem`):
SQLAlchemy's psycopg dialect hands the query to psycopg as keyword arguments, and
libpq reads whatever the URL leaves out from its environment as usual (PGPASSWORD,
PGPASSFILE or ~/.pgpass, PGSSLMODE, PGAPPNAME, a service file). launch-tui adds
only defaults, each yielding to the URL and to libpq's environment:

- `fallback_application_name=launch-tui`, libpq's parameter for exactly this: an
  `application_name` in the URL or PGAPPNAME wins, and a DBA sees whose
  connections these are in pg_stat_activity;
- `connect_timeout=10` unless the URL or PGCONNECT_TIMEOUT sets one, so an
  unreachable host fails in seconds, not after psycopg's 130 s default.

A query parameter libpq does not know is refused in one sentence before anything
connects. `[store] statement_timeout_s` and `idle_in_transaction_timeout_s` are set
on each connection as it opens (`SET`, not the `options` startup parameter, which
connection poolers such as PgBouncer refuse). The store's connections
(`connect_args`) and the change feed's LISTEN connection (`conninfo`) get the same
parameters.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url

from launch_tui.core.errors import StoreError

APP_NAME = "launch-tui"
CONNECT_TIMEOUT_S = 10
_EXAMPLES = "such as sslmode, sslrootcert, sslcert, sslkey, application_name or connect_timeout"


def params(url: str | URL) -> dict[str, Any]:
    """The keyword arguments SQLAlchemy's dialect gives psycopg for `url`: user,
    password, host, port and dbname from the URL, then its query (which wins)."""
    u = make_url(url)
    _, kwargs = u.get_dialect()().create_connect_args(u)
    return dict(kwargs)


@functools.cache
def _keywords() -> frozenset[str]:
    from psycopg import pq  # only a PostgreSQL store gets here; its driver is installed

    return frozenset(d.keyword.decode() for d in pq.Conninfo.get_defaults())


def check(url: str | URL) -> None:
    """Refuse a query parameter that libpq does not know (psycopg would refuse it
    only when connecting, as "invalid connection option")."""
    for key in make_url(url).query:
        if key not in _keywords():
            raise StoreError(
                f"store: '{key}' in the URL's query is not a PostgreSQL connection "
                f"parameter ({_EXAMPLES}).")


def defaults(given: dict[str, Any]) -> dict[str, Any]:
    """What launch-tui adds to the parameters `given` (see the module docstring)."""
    added: dict[str, Any] = {}
    if "fallback_application_name" not in given:
        added["fallback_application_name"] = APP_NAME
    if "connect_timeout" not in given and not os.environ.get("PGCONNECT_TIMEOUT"):
        added["connect_timeout"] = CONNECT_TIMEOUT_S
    return added


def connect_args(url: str | URL) -> dict[str, Any]:
    """`create_engine(connect_args=…)` for a PostgreSQL store: only the defaults; the
    URL's own parameters reach psycopg through the dialect (and would win anyway)."""
    check(url)
    return defaults(params(url))


def conninfo(url: str | URL, *, fallback_name: str = APP_NAME) -> str:
    """The libpq connection string of a store URL, with the store's defaults, for
    connecting with psycopg directly (the LISTEN connection). `fallback_name` is
    the application name unless the URL or PGAPPNAME gives one."""
    from psycopg.conninfo import make_conninfo

    check(url)
    given = params(url)
    return make_conninfo("", **{**given, **defaults(given),
                                "fallback_application_name": fallback_name})


def connect_timeout(url: str | URL) -> str:
    """The connect timeout in force for `url`, in seconds (for messages)."""
    given = params(url)
    return str(given.get("connect_timeout") or os.environ.get("PGCONNECT_TIMEOUT")
               or CONNECT_TIMEOUT_S)


def set_session_timeouts(engine: Engine, *, statement_timeout_s: float | None,
                         idle_in_transaction_timeout_s: float | None) -> None:
    """Give every new connection of `engine` these timeouts, in seconds (None: leave
    the server's, the role's or the URL's `options` as they are; 0: no limit)."""
    settings = {name: _ms(seconds) for name, seconds in (
        ("statement_timeout", statement_timeout_s),
        ("idle_in_transaction_session_timeout", idle_in_transaction_timeout_s),
    ) if seconds is not None}
    if not settings:
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # In autocommit, so the settings are not rolled back with the first
        # transaction of this connection that fails.
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True
        try:
            for name, ms in settings.items():
                dbapi_conn.execute(f"SET {name} = {ms}")
        finally:
            dbapi_conn.autocommit = autocommit


def _ms(seconds: float) -> int:
    # PostgreSQL counts milliseconds, and 0 means no limit: a positive setting below
    # one millisecond must not turn into none.
    return 0 if seconds == 0 else max(1, math.ceil(seconds * 1000))
