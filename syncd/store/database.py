"""Engines and migrations.

SQLite is tuned for one writer and many readers (WAL, NORMAL sync, a busy timeout);
PostgreSQL is used as is.  Migrations run at start-up under a lock so that several
daemons sharing one PostgreSQL never migrate at once.
"""

from __future__ import annotations

import select
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, NoSuchModuleError, OperationalError

from syncd.errors import StoreError
from syncd.store.status_read import POSTGRES_CONNECT_ARGS, code_head

if TYPE_CHECKING:
    # Alembic is imported only to migrate: a command on an up-to-date database (status,
    # every list) does not pay the tenth of a second its import costs.
    from alembic.config import Config as AlembicConfig

# An arbitrary constant: the key of the PostgreSQL advisory lock taken while migrating.
_MIGRATION_LOCK = 0x5_9C_D0_01
# A connection not pinged is replaced after this long: a firewall that drops idle
# connections without a word is caught by it, not by the socket.
RECYCLE_SECONDS = 3600


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at every WAL checkpoint; safe with WAL
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Deleted and overwritten content is zeroed, not left in free pages: `syncd forget`
    # must not leave the person readable in the file.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()
    # The search index's trigger reads a deleted record's tokens back with it.
    dbapi_connection.create_function("syncd_search_terms", 1, _search_terms, deterministic=True)


def reclaim_freed_pages(conn: Connection) -> bool:
    """After a forget on SQLite: move the zeroed pages (``secure_delete`` is on for every
    connection) from the write-ahead log into the file and empty the log, so that neither
    file holds the erased text.  Best effort: a reader holding the log open delays it to
    the next checkpoint.  PostgreSQL keeps dead rows until VACUUM: returns False there."""
    if conn.dialect.name != "sqlite":
        return False
    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return True


def unchecked_sqlite_engine(url: URL) -> Engine:
    """An engine of one connection to the SQLite database ``url`` that does not check
    foreign keys, for a bulk insert whose caller checks what they would, once a batch
    rather than once a row (a quarter of a million-row insert's time).  Dispose of it."""
    engine = create_engine(url, connect_args={"timeout": 30}, pool_size=1, max_overflow=0)

    def pragmas(dbapi_connection: Any, record: Any) -> None:
        _sqlite_pragmas(dbapi_connection, record)
        dbapi_connection.execute("PRAGMA foreign_keys=OFF")

    event.listen(engine, "connect", pragmas)
    return engine


def _search_terms(packed: bytes) -> str:
    # Imported on first use: a command that deletes no record never pays for the tokeniser.
    from syncd.store.search_index import unpack

    return unpack(packed)


def _closed_by_server(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """At checkout, without a round trip: an idle connection with something to read was
    closed or told it would be (a restart, an idle timeout, pg_terminate_backend: the
    server says so, then closes).  The pool then opens a fresh one in its place."""
    if not record.info.get("syncd_used"):
        # Just opened (the pool clears ``info`` with each connection): never refused, so
        # that a stray byte a new connection may have (a TLS ticket) cannot loop.
        record.info["syncd_used"] = True
        return
    try:
        fd = dbapi_connection.fileno()
    except Exception:  # closed already
        raise DisconnectionError("the connection is closed") from None
    poll = select.poll()  # not select.select: an API holds far more than 1,024 sockets
    poll.register(fd, select.POLLIN | select.POLLPRI)
    if poll.poll(0):
        raise DisconnectionError("the server closed the connection")


@contextmanager
def transaction(bind: Engine | Connection) -> Iterator[Connection]:
    """A transaction on ``bind``: a connection of the engine's pool for its length, or the
    connection given (several transactions in a row, one checkout: each pings the server
    first on PostgreSQL)."""
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            yield conn
    else:
        with bind.begin():
            yield bind


def make_engine(url: str, *, pool_size: int = 5, ping: bool = True) -> Engine:
    """``pool_size``: connections kept open; a daemon asks for one per worker and a few for
    its heartbeat, verify and follow-up threads, so that a busy pool never times a sync out.

    ``ping``: a server database's connection answers a ping at each checkout (a round
    trip).  Without it (the API: one more round trip a request was a third of a page's
    time), psycopg's connections are checked by their socket instead, and renewed
    hourly."""
    pool = {"pool_size": pool_size, "max_overflow": pool_size}
    try:
        if url.startswith("sqlite"):
            in_memory = make_url(url).database in (None, "", ":memory:")  # one connection only
            engine = create_engine(url, connect_args={"timeout": 30}, **({} if in_memory else pool))
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            parsed = make_url(url)
            connect_args = (
                {k: v for k, v in POSTGRES_CONNECT_ARGS.items() if k not in parsed.query}
                if parsed.get_backend_name() == "postgresql"
                else {}
            )
            by_socket = not ping and parsed.get_driver_name() == "psycopg"
            engine = create_engine(
                url,
                pool_pre_ping=not by_socket,
                pool_recycle=RECYCLE_SECONDS if by_socket else -1,
                connect_args=connect_args,
                **pool,
            )
            if by_socket:
                event.listen(engine, "checkout", _closed_by_server)
    except (ArgumentError, NoSuchModuleError) as err:
        raise StoreError(
            f"database.url is not a usable SQLAlchemy URL ({err})",
            hint='use e.g. "sqlite:///syncd.db" or "postgresql+psycopg://user@host/db"',
        ) from None
    return engine


def _alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(files("syncd.schema") / "migrations"))
    return cfg


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision; a no-op when it already is."""
    from alembic import command

    cfg = _alembic_config()
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except OperationalError as err:
        raise StoreError(
            f"cannot open or migrate the database: {err.orig}",
            hint="check database.url and that the database server is running",
        ) from None


def _stored_revision(engine: Engine) -> str | None:
    """The revision alembic stamped in the database, read with one query."""
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            stamped = list(conn.scalars(text("SELECT version_num FROM alembic_version")))
    except OperationalError as err:
        raise StoreError(
            f"cannot open or migrate the database: {err.orig}",
            hint="check database.url and that the database server is running",
        ) from None
    return stamped[0] if len(stamped) == 1 else None


def schema_is_current(engine: Engine) -> bool:
    head = code_head()
    return head is not None and _stored_revision(engine) == head


def open_database(url: str, *, migrate: bool = True, pool_size: int = 5) -> Engine:
    engine = make_engine(url, pool_size=pool_size)
    if migrate and not schema_is_current(engine):
        upgrade(engine)
    return engine
