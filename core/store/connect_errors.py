"""What the store says when PostgreSQL cannot be reached, or drops it while working:
one sentence (a StoreError) naming the database, host, port and the cause libpq
gave; never a password, never a traceback.

- Connecting (`install`): SQLAlchemy calls `handle_error` for a connection that
  fails to open, and every connection of the store's threads opens through it,
  first or after a reconnect; the error becomes "cannot connect to …".
- Working (`translate`, called by the store's threads on what a transaction
  raised): a lost connection (a server restart, a network cut, a terminated
  backend, a session ended for idling inside a transaction) or a cancelled
  statement (a statement timeout) becomes a StoreError; every other error (a
  constraint, a conflict) is left to its caller.

The causes are libpq's own words, trimmed to their first line (libpq adds hints
on further lines, and psycopg a list of every address it tried).
"""

from __future__ import annotations

import getpass
import os
import re
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError

from launch_tui.core.errors import StoreError
from launch_tui.core.redact import mask_url
from launch_tui.core.store import pgparams

# libpq's and psycopg's framing around the cause.
_FRAMES = (
    re.compile(r"^connection (?:failed|is bad): "),
    re.compile(r'^connection to server (?:at "[^"]*"(?: \([^)]*\))?, port \S+|on socket "[^"]*") '
               r"failed: "),
    re.compile(r"^(?:FATAL|ERROR|PANIC):\s+"),
)
_RESOLVE = re.compile(r"^failed to resolve host '[^']*': (?:\[Errno [^\]]*\] )?(?P<why>.*)$")
_CANCELLED = "57014"  # query_canceled: a statement timeout, or pg_cancel_backend
# The server ended a session that sat inside a transaction too long: this process was
# stopped or hung mid-write (`[store] idle_in_transaction_timeout_s`).
_IDLE_IN_TRANSACTION = "25P03"
# Errors that end the session rather than a statement: connection_exception (08…)
# and operator intervention (57P01 admin shutdown … 57P05 idle session timeout).
_LOST = ("08", "57P")
_QUERY_SECRET = re.compile(r"(?<=[?&])(?P<key>password|sslpassword)=[^&]*")
_SHORTEST_SECRET = 4  # shorter "passwords" would blank out ordinary words


def place(url: str | URL, *, as_user: bool = False) -> str:
    """`PostgreSQL database "launch" on db.example:5432`, as libpq will see it: what
    the URL leaves out comes from PGHOST, PGPORT, PGDATABASE and PGUSER."""
    try:
        given = pgparams.params(url)
    except Exception:  # a message must not fail: name what is known
        given = {}
    env = os.environ
    user = str(given.get("user") or env.get("PGUSER") or _os_user())
    database = str(given.get("dbname") or env.get("PGDATABASE") or user)
    hosts = str(given.get("host") or env.get("PGHOST") or given.get("hostaddr")
                or env.get("PGHOSTADDR") or "")
    ports = str(given.get("port") or env.get("PGPORT") or "5432")
    service = given.get("service") or env.get("PGSERVICE")
    if hosts:
        where = _hosts(hosts, ports)
    elif service:
        where = f'service "{service}"'
    else:
        where = f"the local socket (port {ports})"
    who = f" as {user}" if as_user else ""
    return f'PostgreSQL database "{database}" on {where}{who}'


def shown_url(url: str | URL) -> str:
    """The URL as messages show it: its password, and a password among the query's
    libpq parameters, masked."""
    shown = make_url(url).render_as_string(hide_password=True)
    return _QUERY_SECRET.sub(r"\g<key>=***", shown)


def _hosts(hosts: str, ports: str) -> str:
    names = hosts.split(",")
    numbers = ports.split(",")
    if len(numbers) != len(names):
        numbers = [numbers[0]] * len(names)
    shown = []
    for host, port in zip(names, numbers, strict=True):
        port = port or "5432"
        if host.startswith("/"):
            shown.append(f"socket {host.rstrip('/')}/.s.PGSQL.{port}")
        else:
            shown.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return " or ".join(shown)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "?"


def cause(exc: BaseException, url: str | URL) -> str:
    """The cause of a psycopg error in a few words on one line, libpq's framing and
    hints dropped; a few common ones say what to do."""
    text = str(exc).split("\nMultiple connection attempts failed", 1)[0].strip()
    line = text.splitlines()[0] if text else ""
    for frame in _FRAMES:
        line = frame.sub("", line.strip())
    line = " ".join(line.split()).rstrip(" .")
    if not line:
        return type(exc).__name__
    if resolve := _RESOLVE.match(line):
        return f"the host name does not resolve ({resolve.group('why')})"
    if line == "fe_sendauth: no password supplied":
        return ("the server asks for a password and none was given (in the URL, "
                "PGPASSWORD or a pgpass file)")
    if line in ("connection timeout expired", "timeout expired"):
        return (f"no answer within {pgparams.connect_timeout(url)} s (connect_timeout "
                "in the URL sets how long to wait)")
    if len(line) > 1 and line[0].isupper() and line[1].islower():
        line = line[0].lower() + line[1:]  # "Connection refused" ends up mid-sentence
    return line


def connect_failed(exc: BaseException, url: str | URL) -> StoreError:
    """The one sentence for a connection that could not be opened."""
    return StoreError(_scrub(
        f"store: cannot connect to {place(url, as_user=True)}: {cause(exc, url)}.", url))


def install(engine: Engine, url: str | URL) -> None:
    """Make a failure to open one of `engine`'s connections a StoreError."""

    @event.listens_for(engine, "handle_error")
    def _on_error(ctx: ExceptionContext) -> BaseException | None:
        # No connection: the error happened while opening one (a statement's errors
        # come with the connection they ran on, and go to `translate`).
        if ctx.connection is not None or ctx.is_pre_ping:
            return None
        return connect_failed(ctx.original_exception, url)


def translate(exc: BaseException, conn: Connection | None) -> BaseException:
    """What a transaction on `conn` raised, as its caller should see it: a lost
    connection or a cancelled statement on PostgreSQL as one sentence; anything else
    (and everything on SQLite) unchanged."""
    if conn is None:
        return exc  # opening failed: `install` has made that a sentence already
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if not type(orig).__module__.startswith("psycopg"):
        return exc
    import psycopg  # already imported: the error is its own

    url = conn.engine.url
    state = getattr(orig, "sqlstate", None) or ""
    if state == _CANCELLED:
        why = cause(orig, url)
        if "statement timeout" in why:
            message = (f"store: {place(url)} cancelled a statement that ran longer than the "
                       "statement timeout ([store] statement_timeout_s).")
        else:
            message = f"store: {place(url)} cancelled a statement ({why})."
    elif state == _IDLE_IN_TRANSACTION:
        message = (f"store: {place(url)} ended this process's session, which had sat inside "
                   "a transaction longer than [store] idle_in_transaction_timeout_s (the "
                   "process was stopped or hung mid-write); nothing of that write was kept.")
    elif isinstance(orig, psycopg.OperationalError) and (not state or state.startswith(_LOST)):
        message = f"store: lost the connection to {place(url)}: {cause(orig, url)}."
    else:
        return exc
    error = StoreError(_scrub(message, url))
    error.__cause__ = exc
    return error


def _scrub(message: str, url: str | URL) -> str:
    """Belt and braces: libpq never repeats a password, but no message of ours may
    carry one, whatever a driver puts in its text."""
    try:
        given: dict[str, Any] = pgparams.params(url)
    except Exception:
        given = {}
    for secret in (given.get("password"), given.get("sslpassword"),
                   os.environ.get("PGPASSWORD")):
        if secret and len(str(secret)) >= _SHORTEST_SECRET:
            message = message.replace(str(secret), "***")
    return mask_url(message)
