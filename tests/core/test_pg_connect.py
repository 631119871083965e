"""Connecting to PostgreSQL as a PostgreSQL tool does: libpq parameters in the URL
(sslmode, application_name, connect_timeout, …), PGPASSWORD and pgpass files, and
`[store] pool_size` and `statement_timeout_s`; and every connection failure is one
sentence naming the database, host, port and cause, never the password.

Tests that talk to a server run in the PostgreSQL pass (`postgres_only`); the
settings checks, and what needs no server, run on both stores."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from launch_tui.core.errors import StoreError, ValidationError
from launch_tui.core.jobenv import without_control_plane
from launch_tui.core.service import LaunchService
from launch_tui.core.settings import StoreSettings, load_settings, normalise_store_url
from launch_tui.core.store import connect_errors, pgparams
from launch_tui.core.store.listen import conninfo
from tests import stores
from tests.agent_harness import Lab, script, wait_for
from tests.core.test_store_errors import run, sentence

pg = pytest.mark.postgres_only
PASSWORD = "launch-test-pw"  # the test server's (scripts/test-services.sh)
WRONG = "Wr0ng-Secret-pw"


def _server() -> tuple[str, int]:
    u = make_url(stores.server_url())
    return str(u.host), int(u.port or 5432)


def _url(*, user: str = "launch", password: str | None = PASSWORD, host: str | None = None,
         port: int | None = None, database: str = "postgres", query: str = "") -> str:
    h, p = _server()
    auth = user if password is None else f"{user}:{password}"
    return (f"postgresql://{auth}@{host or h}:{port or p}/{database}"
            + (f"?{query}" if query else ""))


def _activity(database: str) -> list[tuple[str, str]]:
    """(application_name, query) of every client session on `database` but the
    asker's (not the server's own workers: autovacuum visits the database too)."""
    with psycopg.connect(stores.server_url(), autocommit=True) as admin:
        return [(r[0], r[1]) for r in admin.execute(
            "SELECT application_name, query FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'", (database,))]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (a host that hangs)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    accepted: list[socket.socket] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            with contextlib.suppress(OSError):
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        done.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


def _closed_port() -> int:
    """A port nothing listens on (refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------- failures


@pg
@pytest.mark.parametrize("case", [
    "wrong password", "unknown database", "unknown host", "refused port", "timeout",
    "ssl required", "bad sslrootcert", "no password"])
def test_a_connection_failure_is_one_sentence(case: str, tmp_path: Path,
                                              request: pytest.FixtureRequest) -> None:
    host, port = _server()
    database, who, env = "postgres", "launch", {"PGPASSFILE": str(tmp_path / "none")}
    if case == "wrong password":
        url = _url(password=WRONG)
        why = 'password authentication failed for user "launch"'
    elif case == "unknown database":
        database = "no_such_db_here"
        url = _url(database=database)
        why = 'database "no_such_db_here" does not exist'
    elif case == "unknown host":
        host = "no-such-host.invalid"
        url = _url(host=host)
        why = "the host name does not resolve ("
    elif case == "refused port":
        host, port = "127.0.0.1", _closed_port()
        url = _url(host=host, port=port)
        why = "connection refused"
    elif case == "timeout":
        host, port = "127.0.0.1", request.getfixturevalue("silent_port")
        url = _url(host=host, port=port, query="connect_timeout=2")
        why = "no answer within 2 s (connect_timeout in the URL sets how long to wait)"
    elif case == "ssl required":
        url = _url(query="sslmode=require")
        why = "server does not support SSL, but SSL was required"
    elif case == "bad sslrootcert":
        # Direct TLS (libpq 17+) loads the root certificate before the server could
        # say it has no SSL: the missing file is what is reported.
        url = _url(query="sslmode=verify-full&sslnegotiation=direct"
                         "&sslrootcert=/nonexistent/root.crt")
        why = 'root certificate file "/nonexistent/root.crt" does not exist'
    else:
        url = _url(password=None)
        why = ("the server asks for a password and none was given (in the URL, PGPASSWORD "
               "or a pgpass file)")
    started = time.monotonic()
    r = run("--store", url, "queue", "list", home=tmp_path / "h", env=env)
    line = sentence(r)  # exit 1, one line on stderr, no traceback
    assert line.startswith(
        f'store: cannot connect to PostgreSQL database "{database}" on {host}:{port} as '
        f"{who}: {why}"), line
    assert line.endswith(".") and "\n" not in line
    assert PASSWORD not in r.err + r.out and WRONG not in r.err + r.out
    assert time.monotonic() - started < 30


@pg
async def test_the_service_raises_the_same_sentence(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as caught:
        await LaunchService.open(store=_url(password=WRONG), home=tmp_path / "h")
    host, port = _server()
    assert str(caught.value) == (
        f'store: cannot connect to PostgreSQL database "postgres" on {host}:{port} as launch: '
        'password authentication failed for user "launch".')
    assert caught.value.__traceback__ is not None and WRONG not in str(caught.value)


def test_an_unknown_url_parameter_is_refused_before_connecting(tmp_path: Path) -> None:
    # Port 1 would refuse: the sentence is about the parameter, so nothing connected.
    r = run("--store", "postgresql://u:pw-secret@127.0.0.1:1/db?sslmode=disable&colour=blue",
            "queue", "list", home=tmp_path / "h")
    assert sentence(r) == (
        "store: 'colour' in the URL's query is not a PostgreSQL connection parameter (such "
        "as sslmode, sslrootcert, sslcert, sslkey, application_name or connect_timeout).")
    assert "pw-secret" not in r.err


@pg
async def test_a_lost_connection_is_one_sentence_and_the_next_call_reconnects(
        home: Path, store_url: str) -> None:
    (home / "settings.toml").write_text("[store]\npool_size = 1\n")
    database = str(make_url(store_url).database)
    host, port = _server()
    svc = await LaunchService.open(home=home)
    try:
        await svc.create_queue("q", "local-process")
        with psycopg.connect(stores.server_url(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (database,))
        lost = (f'store: lost the connection to PostgreSQL database "{database}" on '
                f"{host}:{port}: terminating connection due to administrator command.")
        with pytest.raises(StoreError) as caught:
            await svc.list_queues()  # the one reader's connection is gone
        assert str(caught.value) == lost
        with pytest.raises(StoreError) as caught:
            await svc.create_queue("r", "local-process")  # and the writer's
        assert str(caught.value) == lost
        assert [q.name for q in await svc.list_queues()] == ["q"]
        await svc.create_queue("r", "local-process")
    finally:
        await svc.close()


# ---------------------------------------------------------------------- what works


@pg
async def test_sslmode_disable_and_the_urls_application_name(
        tmp_path: Path, store_url: str) -> None:
    url = f"{store_url}?sslmode=disable&application_name=team-launcher"
    svc = await LaunchService.open(store=url, home=tmp_path / "h")
    try:
        await svc.create_queue("q", "local-process")
        ssl = await svc._store.read(lambda c: c.exec_driver_sql(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").scalar())
        assert ssl is False
        names = {name for name, _ in _activity(str(make_url(store_url).database))}
        assert names == {"team-launcher"}
    finally:
        await svc.close()


@pg
async def test_connections_are_named_launch_tui_while_a_service_is_open(
        tmp_path: Path, store_url: str) -> None:
    database = str(make_url(store_url).database)
    svc = await LaunchService.open(store=store_url, home=tmp_path / "h")
    try:
        feed = svc.subscribe(after=0)
        await svc.create_queue("q", "local-process")
        await asyncio.wait_for(anext(feed), 10)  # a subscriber: the process listens
        seen: list[tuple[str, str]] = []

        async def listening() -> bool:
            seen[:] = await asyncio.to_thread(_activity, database)
            return any(name == "launch-tui listen" for name, _ in seen)

        await wait_for(listening, "the LISTEN connection", 10)
        assert {name for name, _ in seen} == {"launch-tui", "launch-tui listen"}, seen
        assert [q for name, q in seen if name == "launch-tui listen"] == [
            "LISTEN launch_tui_events"]
        await feed.aclose()
    finally:
        await svc.close()
    assert _activity(database) == []


@pg
def test_pgpassword_is_used_when_the_url_has_no_password(
        tmp_path: Path, store_url: str) -> None:
    url = make_url(store_url).set(password=None).render_as_string(hide_password=False)
    env = {"PGPASSWORD": PASSWORD, "PGPASSFILE": str(tmp_path / "none")}
    assert run("--store", url, "queue", "create", "q", "-r", "local-process",
               home=tmp_path / "h", env=env).code == 0
    r = run("--store", url, "queue", "list", home=tmp_path / "h", env=env)
    assert r.code == 0 and "q" in r.out, r.err


@pg
def test_a_pgpass_file_is_used_when_the_url_has_no_password(
        tmp_path: Path, store_url: str) -> None:
    u = make_url(store_url)
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"{u.host}:{u.port}:{u.database}:{u.username}:{PASSWORD}\n")
    passfile.chmod(0o600)  # libpq ignores a pgpass file others may read
    url = u.set(password=None).render_as_string(hide_password=False)
    env = {"PGPASSFILE": str(passfile)}
    assert "PGPASSWORD" not in os.environ
    r = run("--store", url, "queue", "create", "q", "-r", "local-process",
            home=tmp_path / "h", env=env)
    assert r.code == 0, r.err
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600


@pg
async def test_statement_timeout_applies_to_every_connection(home: Path) -> None:
    (home / "settings.toml").write_text("[store]\nstatement_timeout_s = 0.5\n")
    svc = await LaunchService.open(home=home)
    try:
        show = "SHOW statement_timeout"
        assert await svc._store.read(lambda c: c.exec_driver_sql(show).scalar()) == "500ms"
        assert await svc._store.write(lambda c: c.exec_driver_sql(show).scalar()) == "500ms"
        with pytest.raises(StoreError) as caught:
            await svc._store.read(lambda c: c.exec_driver_sql("SELECT pg_sleep(5)").all())
        assert str(caught.value).startswith("store: PostgreSQL database ")
        assert str(caught.value).endswith(
            " cancelled a statement that ran longer than the statement timeout "
            "([store] statement_timeout_s).")
        await svc.create_queue("q", "local-process")  # the store works on
    finally:
        await svc.close()


@pg
async def test_without_a_statement_timeout_the_servers_stands(home: Path) -> None:
    svc = await LaunchService.open(home=home)
    try:
        show = "SHOW statement_timeout"
        assert await svc._store.read(lambda c: c.exec_driver_sql(show).scalar()) == "0"
    finally:
        await svc.close()


@pg
async def test_a_session_stuck_inside_a_write_frees_its_row_locks(home: Path) -> None:
    """A process stopped in the middle of a write (here: its writer thread held inside
    the transaction, which is what the server sees of a SIGSTOPped process) holds its
    row locks only until the idle-in-transaction timeout; then others write on, and
    the stuck write fails in one sentence when it resumes."""
    (home / "settings.toml").write_text("[store]\nidle_in_transaction_timeout_s = 1\n")
    stuck, other = (await LaunchService.open(home=home), await LaunchService.open(home=home))
    try:
        await stuck.create_queue("q", "local-process")
        await stuck.create_queue("q2", "local-process")
        held, resume = threading.Event(), threading.Event()

        def hold_the_queue_rows(conn: object) -> None:
            conn.exec_driver_sql(  # type: ignore[attr-defined]
                """UPDATE queues SET config = '{"env": {"WHO": "stuck"}}' """
                "WHERE name IN ('q', 'q2')")
            held.set()
            resume.wait(10)
            conn.exec_driver_sql("SELECT 1")  # type: ignore[attr-defined]

        holding = asyncio.ensure_future(stuck._store.write(hold_the_queue_rows))
        assert await asyncio.to_thread(held.wait, 10)  # it holds the rows now
        # Waits for the row; it gets it while the stuck write is still held (`resume`
        # is set only after), so the server must have ended the stuck session.
        await other.update_queue("q", config={"env": {"WHO": "other"}})
        resume.set()
        with pytest.raises(StoreError) as caught:
            await holding
        assert str(caught.value).startswith("store: PostgreSQL database ")
        assert str(caught.value).endswith(
            " ended this process's session, which had sat inside a transaction longer than "
            "[store] idle_in_transaction_timeout_s (the process was stopped or hung "
            "mid-write); nothing of that write was kept.")
        # Nothing of the stuck write stayed, and its process writes on over a new
        # connection.
        assert (await other.get_queue("q")).config.env == {"WHO": "other"}
        assert (await other.get_queue("q2")).config.env == {}
        await stuck.create_queue("q3", "local-process")
        show = "SHOW idle_in_transaction_session_timeout"
        assert await stuck._store.write(lambda c: c.exec_driver_sql(show).scalar()) == "1s"
    finally:
        await stuck.close()
        await other.close()


async def _busy_readers(svc: LaunchService, how_many: int, seconds: float) -> None:
    """`how_many` reads that each hold a reader for `seconds`, asked for one after
    another: the store starts another reader when none is idle, up to pool_size."""

    def slow(conn: object) -> None:
        time.sleep(seconds)

    reads = []
    for _ in range(how_many):
        reads.append(asyncio.ensure_future(svc._store.read(slow)))
        await asyncio.sleep(0.02)
    await asyncio.gather(*reads)


async def test_pool_size_bounds_the_reader_threads(home: Path) -> None:
    (home / "settings.toml").write_text("[store]\npool_size = 2\n")
    svc = await LaunchService.open(home=home)
    try:
        peak = 0
        busy = asyncio.create_task(_busy_readers(svc, 8, 0.2))
        while not busy.done():
            readers = [t for t in threading.enumerate() if t.name == "launch-store-reader"]
            peak = max(peak, len(readers))
            await asyncio.sleep(0.02)
        await busy
        assert peak == 2
    finally:
        await svc.close()


@pg
async def test_pool_size_bounds_the_connections(home: Path, store_url: str) -> None:
    (home / "settings.toml").write_text("[store]\npool_size = 3\n")
    database = str(make_url(store_url).database)
    svc = await LaunchService.open(home=home)
    try:
        peak = 0
        busy = asyncio.create_task(_busy_readers(svc, 12, 0.3))
        while not busy.done():
            seen = await asyncio.to_thread(_activity, database)
            peak = max(peak, sum(1 for name, _ in seen if name == "launch-tui"))
            await asyncio.sleep(0.05)
        await busy
        assert peak == 3 + 1  # the readers and the writer
    finally:
        await svc.close()


# ---------------------------------------------------------------------- parameters


def test_launch_tui_adds_only_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    url = normalise_store_url("postgresql://u:pw@db.example:6432/launch?sslmode=verify-full"
                              "&sslrootcert=/etc/ca.pem")
    assert pgparams.params(url) == {
        "user": "u", "password": "pw", "host": "db.example", "port": 6432, "dbname": "launch",
        "sslmode": "verify-full", "sslrootcert": "/etc/ca.pem"}
    assert pgparams.connect_args(url) == {"fallback_application_name": "launch-tui",
                                          "connect_timeout": 10}
    # What the URL or libpq's environment says wins.
    assert pgparams.connect_args(f"{url}&connect_timeout=3&fallback_application_name=x") == {}
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "30")
    assert pgparams.connect_args(url) == {"fallback_application_name": "launch-tui"}
    info = psycopg.conninfo.conninfo_to_dict(conninfo(url))
    assert info == {"user": "u", "password": "pw", "host": "db.example", "port": "6432",
                    "dbname": "launch", "sslmode": "verify-full", "sslrootcert": "/etc/ca.pem",
                    "fallback_application_name": "launch-tui listen"}


def test_messages_name_the_place_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGSERVICE", "PGHOSTADDR"):
        monkeypatch.delenv(name, raising=False)
    url = "postgresql+psycopg://me:hunter22@db.example/launch?sslpassword=keypass99"
    assert connect_errors.place(url, as_user=True) == (
        'PostgreSQL database "launch" on db.example:5432 as me')
    assert connect_errors.shown_url(url) == (
        "postgresql+psycopg://me:***@db.example/launch?sslpassword=***")
    assert connect_errors.place("postgresql+psycopg:///launch?host=/run/pg&port=5433") == (
        'PostgreSQL database "launch" on socket /run/pg/.s.PGSQL.5433')
    assert connect_errors.place("postgresql+psycopg://u@/db?host=a:1&host=b:2") == (
        'PostgreSQL database "db" on a:1 or b:2')
    monkeypatch.setenv("PGHOST", "pg.internal")
    monkeypatch.setenv("PGDATABASE", "shared")
    assert connect_errors.place("postgresql+psycopg://") == (
        'PostgreSQL database "shared" on pg.internal:5432')
    # Whatever a driver's text says, the password never reaches a sentence.
    error = connect_errors.connect_failed(
        psycopg.OperationalError("connection failed: odd hunter22 and keypass99"), url)
    assert "hunter22" not in str(error) and "keypass99" not in str(error)


def test_helpers_of_the_agent_never_get_the_stores_access() -> None:
    environ = {"PATH": "/bin", "LAUNCH_TUI_STORE": "postgresql://u:pw@h/db",
               "PGPASSWORD": "pw", "PGPASSFILE": "/root/.pgpass", "PIP_INDEX_URL": "https://x"}
    assert without_control_plane(environ) == {"PATH": "/bin", "PIP_INDEX_URL": "https://x"}


@pg
async def test_the_password_reaches_no_output_file_event_or_job(
        lab: Lab, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent process on a URL with a password (and PGPASSWORD set): its log, the
    agent's stored log lines and events, the run's output and environment, and every
    file under the home are free of it."""
    assert PASSWORD in store_url
    await lab.queue("q")
    job = await lab.job({"env.py": script("""
        import os
        for name in sorted(os.environ):
            print(name, os.environ[name])
        """)}, "python env.py")
    item = await lab.service.enqueue(job, "q")
    monkeypatch.setenv("PGPASSWORD", PASSWORD)  # the agent's environment has it too
    agent = lab.spawn_agent(["q"], "leak-check")
    run_ = await lab.run_of(item.id, within=30)
    finished = await lab.wait_run(run_.id, within=60)
    assert finished.state == "finished", finished
    printed = await lab.output(run_.id)
    names = {line.split(" ", 1)[0] for line in printed}
    assert {"LAUNCH_TUI_STORE", "PGPASSWORD", "PGPASSFILE"}.isdisjoint(names), names
    assert await agent.stop() == 0
    seen = [agent.output(), *printed,
            *(entry.message for entry in await lab.service.agent_logs("leak-check")),
            *(repr(ev) for ev in await lab.service.events_after(0, limit=10_000))]
    assert not [text for text in seen if PASSWORD in text]
    for path in lab.home.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert PASSWORD.encode() not in path.read_bytes(), path


# ---------------------------------------------------------------------- settings


def _settings(home: Path, text: str) -> StoreSettings:
    (home / "settings.toml").write_text(text)
    return load_settings(home).store


def test_store_settings_default_and_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAUNCH_TUI_STORE", raising=False)
    assert load_settings(tmp_path).store == StoreSettings(
        pool_size=4, statement_timeout_s=None, idle_in_transaction_timeout_s=10.0)
    assert _settings(tmp_path, "[store]\npool_size = 8\nstatement_timeout_s = 30\n"
                               "idle_in_transaction_timeout_s = 0\n") == (
        StoreSettings(pool_size=8, statement_timeout_s=30.0, idle_in_transaction_timeout_s=0))
    (tmp_path / "settings.toml").write_text(
        '[store]\nurl = "postgresql://me@db.example/launch"\npool_size = 2\n')
    assert load_settings(tmp_path).store_url == "postgresql+psycopg://me@db.example/launch"
    (tmp_path / "settings.toml").write_text('store = "postgresql://me@db.example/x"\n')
    assert load_settings(tmp_path).store_url == "postgresql+psycopg://me@db.example/x"
    # --store and LAUNCH_TUI_STORE still come first; the [store] settings stay.
    (tmp_path / "settings.toml").write_text('[store]\nurl = "postgresql://a@b/c"\npool_size = 2\n')
    settings = load_settings(tmp_path, "postgresql://other@host/db")
    assert settings.store_url == "postgresql+psycopg://other@host/db"
    assert settings.store.pool_size == 2


@pytest.mark.parametrize(("text", "message"), [
    ("[store]\npool_size = 0\n",
     "settings: store.pool_size must be a whole number from 1 to 64 (got 0)."),
    ("[store]\npool_size = 65\n",
     "settings: store.pool_size must be a whole number from 1 to 64 (got 65)."),
    ("[store]\npool_size = 2.5\n",
     "settings: store.pool_size must be a whole number from 1 to 64 (got 2.5)."),
    ("[store]\npool_size = true\n",
     "settings: store.pool_size must be a whole number from 1 to 64 (got True)."),
    ('[store]\npool_size = "4"\n',
     "settings: store.pool_size must be a whole number from 1 to 64 (got '4')."),
    ("[store]\nstatement_timeout_s = -1\n",
     "settings: store.statement_timeout_s must be a number of seconds, 0 (no limit) or more "
     "(got -1)."),
    ('[store]\nstatement_timeout_s = "30s"\n',
     "settings: store.statement_timeout_s must be a number of seconds, 0 (no limit) or more "
     "(got '30s')."),
    ("[store]\nstatement_timeout_s = nan\n",
     "settings: store.statement_timeout_s must be a number of seconds, 0 (no limit) or more "
     "(got nan)."),
    ("[store]\nidle_in_transaction_timeout_s = -5\n",
     "settings: store.idle_in_transaction_timeout_s must be a number of seconds, 0 (no "
     "limit) or more (got -5)."),
    ("[store]\npoolsize = 4\n",
     "settings: store.poolsize is not a store setting (known: url, pool_size, "
     "statement_timeout_s, idle_in_transaction_timeout_s)."),
    ("[store]\nurl = 5\n", "settings: store.url must be a URL or path (got 5)."),
    ("store = 5\n", "settings: store must be a URL or path, or a [store] table (got 5)."),
])
def test_bad_store_settings_are_one_sentence(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(tmp_path, text)
    assert str(caught.value) == message
    assert caught.value.field is not None and caught.value.field.startswith("store")


def test_bad_store_settings_through_the_cli(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    (home / "settings.toml").write_text("[store]\npool_size = 0\n")
    assert sentence(run("queue", "list", home=home)) == (
        "settings: store.pool_size must be a whole number from 1 to 64 (got 0).")
    assert sorted(os.listdir(home)) == ["settings.toml"]  # no store was made


def test_statement_timeout_is_a_postgresql_setting_sqlite_ignores(
        tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    (home / "settings.toml").write_text("[store]\nstatement_timeout_s = 1\npool_size = 1\n")
    r = run("queue", "list", home=home)
    assert r.code == 0, r.err  # the embedded store opens: it has no statement timeout
