"""Hot-path statements: SQLAlchemy Core statements compiled once per dialect and run
straight on the driver's cursor.

A claim, an enqueue or a state change runs a handful of statements, thousands of
times a second. Built and executed the usual way, each costs SQLAlchemy five
times what the driver takes (building the statement, its cache key, the
execution context); a `Prepared` statement is built once, compiled once per
dialect (with the bind casts and parameter style SQLAlchemy would use), and each
execution only converts parameters (JSON in, JSON out) and calls the cursor. It
runs inside the connection's current transaction, like any other statement.
Statements should name every parameter with `bindparam`; constants may be
literals, which compile to parameters with fixed values.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.expression import Executable


class _Compiled(NamedTuple):
    sql: str
    # One (name, constant, converter) per parameter, in the order the driver takes
    # them (positional styles) or by name: `name` None means the statement's own
    # constant, already converted.
    slots: tuple[tuple[str | None, Any, Callable[[Any], Any] | None], ...]
    names: tuple[str, ...] | None  # parameter names for named styles (None: positional)
    row: Any  # a namedtuple class for result rows (None: returns no rows)
    types: tuple[Any, ...]  # the result columns' types
    # Converters of result columns (e.g. text -> JSON), known at the first result:
    # some need the driver's type code of the column.
    results: tuple[tuple[int, Callable[[Any], Any]], ...] | None


class Prepared:
    def __init__(self, statement: Executable) -> None:
        self._statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self._statement.compile(dialect=dialect)
        binds = compiled.binds
        required = {name: None for name, bp in binds.items() if bp.required}
        params = compiled.construct_params(required)
        names = list(compiled.positiontup or ()) if compiled.positional else list(params)
        slots = []
        for name in names:
            bp = binds.get(name)
            proc = bp.type.dialect_impl(dialect).bind_processor(dialect) if bp is not None else None
            if name in required:
                slots.append((name, None, proc))
            else:
                value = params[name]
                slots.append((None, proc(value) if proc else value, None))
        row, types = None, ()
        columns = getattr(self._statement, "exported_columns", None)
        if columns is not None and len(columns):
            row = collections.namedtuple("Row", list(columns.keys()),  # type: ignore[misc]
                                         rename=True)
            types = tuple(col.type.dialect_impl(dialect) for col in columns)
        return _Compiled(compiled.string, tuple(slots),
                         None if compiled.positional else tuple(names), row, types, None)

    def _with_results(self, conn: Connection, c: _Compiled, description: Any) -> _Compiled:
        results = []
        for i, (impl, col) in enumerate(zip(c.types, description, strict=True)):
            proc = impl.result_processor(conn.dialect, col[1])
            if proc is not None:
                results.append((i, proc))
        c = self._compiled[conn.dialect.name] = c._replace(results=tuple(results))
        return c

    def _prepare(self, conn: Connection) -> _Compiled:
        dialect = conn.dialect
        c = self._compiled.get(dialect.name)
        if c is None:
            c = self._compiled[dialect.name] = self._compile(dialect)
        return c

    @staticmethod
    def _params(c: _Compiled, given: Mapping[str, Any]) -> Any:
        values = [
            const if name is None else (proc(given[name]) if proc else given[name])
            for name, const, proc in c.slots
        ]
        return values if c.names is None else dict(zip(c.names, values, strict=True))

    def execute(self, conn: Connection, **params: Any) -> int:
        """Run it; return the number of rows it changed."""
        c = self._prepare(conn)
        cur = _driver(conn).execute(c.sql, self._params(c, params))
        try:
            return int(cur.rowcount)
        finally:
            cur.close()

    def executemany(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        c = self._prepare(conn)
        if len(rows) == 1:  # the driver's executemany costs more for a single row
            _driver(conn).execute(c.sql, self._params(c, rows[0])).close()
        else:
            cur = _driver(conn).cursor()
            try:
                cur.executemany(c.sql, [self._params(c, r) for r in rows])
            finally:
                cur.close()

    def all(self, conn: Connection, **params: Any) -> list[Any]:
        """Every result row, as named tuples with decoded columns."""
        c = self._prepare(conn)
        cur = _driver(conn).execute(c.sql, self._params(c, params))
        try:
            if c.results is None:
                c = self._with_results(conn, c, cur.description)
            return [_row(c, r) for r in cur.fetchall()]
        finally:
            cur.close()

    def first(self, conn: Connection, **params: Any) -> Any | None:
        c = self._prepare(conn)
        cur = _driver(conn).execute(c.sql, self._params(c, params))
        try:
            if c.results is None:
                c = self._with_results(conn, c, cur.description)
            raw = cur.fetchone()
            if raw is not None:
                cur.fetchall()  # finish the statement (an UPDATE ... RETURNING, say)
            return None if raw is None else _row(c, raw)
        finally:
            cur.close()

    def scalar(self, conn: Connection, **params: Any) -> Any:
        row = self.first(conn, **params)
        return None if row is None else row[0]


def _driver(conn: Connection) -> Any:
    """The driver's own connection (sqlite3's and psycopg's both run statements with
    `execute`, returning a cursor)."""
    return conn.connection.dbapi_connection


def _row(c: _Compiled, raw: Sequence[Any]) -> Any:
    assert c.results is not None
    if not c.results:
        return c.row._make(raw)
    values = list(raw)
    for i, proc in c.results:
        values[i] = proc(values[i])
    return c.row._make(values)
