"""The API's engine pings no connection (a round trip a request): a connection that the
PostgreSQL server closed is found by its socket at checkout and replaced, so a restarted
or a terminated backend costs no request an error.  Reads of one statement run in
autocommit: no BEGIN, no ROLLBACK."""

from __future__ import annotations

import select
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text

from syncd.api.auth import Authenticator
from syncd.api.context import Api
from syncd.config import Config
from syncd.store.database import make_engine, open_database
from tests.servers.postgres import scratch_database

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(pg_admin: str) -> Iterator[str]:
    with scratch_database(pg_admin) as url:
        open_database(url).dispose()  # migrated, as the API finds it
        yield url


def _backend(engine: Engine) -> tuple[int, int]:
    """The pooled connection's backend pid and socket."""
    with engine.connect() as conn:
        pid = int(conn.scalar(text("SELECT pg_backend_pid()")) or 0)
        return pid, conn.connection.dbapi_connection.fileno()  # type: ignore[union-attr]


def _terminate(url: str, pid: int) -> None:
    admin = create_engine(url)
    with admin.connect() as conn:
        assert conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()


def _wait_closed(fd: int) -> None:
    """Until the pooled connection's socket shows the server's goodbye."""
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    assert poll.poll(5000), "the server never closed the terminated connection"


def test_a_terminated_connection_is_replaced_without_an_error(pg_url: str) -> None:
    engine = make_engine(pg_url, pool_size=1, ping=False)
    try:
        assert engine.pool._pre_ping is False  # type: ignore[attr-defined]
        first, fd = _backend(engine)
        _terminate(pg_url, first)
        _wait_closed(fd)
        started = time.monotonic()
        assert _backend(engine)[0] not in (0, first)  # a fresh backend, and no error
        assert time.monotonic() - started < 5
    finally:
        engine.dispose()


def test_one_statement_reads_run_in_autocommit(pg_url: str) -> None:
    engine = make_engine(pg_url, pool_size=1, ping=False)
    try:
        api = Api(
            Config.from_dict({"database": {"url": pg_url}}),
            engine,
            Authenticator(engine, rate_limit=10),
        )
        with api.once.connect() as conn:
            conn.execute(text("SELECT 1"))
            assert conn.connection.dbapi_connection.autocommit is True  # type: ignore[union-attr]
            assert conn.scalar(text("SELECT now() = statement_timestamp()")) is True
        with engine.connect() as conn:  # the pool's connection is transactional again
            conn.execute(text("SELECT 1"))
            assert conn.connection.dbapi_connection.autocommit is False  # type: ignore[union-attr]
    finally:
        engine.dispose()
