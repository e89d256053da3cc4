"""Leases of a fleet, in bulk: each daemon claims its rendezvous share, hands over what a
newcomer owns (after its batch in hand), and takes over from one that stops or dies."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, event, update

from syncd.domain.assignment import assign, source_key
from syncd.engine.fleet import (
    LEASE,
    Fleet,
    FleetView,
    clear_predecessors,
    end_abandoned_transactions,
)
from syncd.schema.tables import daemons, source_health
from syncd.store import leases
from syncd.store.database import open_database
from tests.servers.postgres import scratch_database

KEYS = frozenset(("mailbox", f"rep{n}") for n in range(60)) | {("calendar", "rep0-cal")}
NONE: frozenset[tuple[str, str]] = frozenset()


def _step(
    engine: Engine,
    fleet: Fleet,
    busy: frozenset[tuple[str, str]] = NONE,
    *,
    claim_nothing: bool = False,
) -> FleetView:
    with engine.begin() as conn:
        leases.heartbeat(conn, fleet.id, "beat")
        return fleet.step(conn, KEYS, busy, claim=not claim_nothing)


def _expected(live: list[str]) -> dict[str, set[tuple[str, str]]]:
    by_key = {source_key(*k): k for k in KEYS}
    return {d: {by_key[k] for k in keys} for d, keys in assign(by_key, live).items()}


def _register(engine: Engine, *ids: str) -> list[Fleet]:
    with engine.begin() as conn:
        for n, daemon_id in enumerate(ids):
            leases.register_daemon(conn, daemon_id, "host", 1000 + n)
    return [Fleet(daemon_id) for daemon_id in ids]


def test_two_daemons_hold_their_shares_and_a_newcomer_takes_its_own(db_url: str) -> None:
    engine = open_database(db_url)
    a, b = _register(engine, "a", "b")
    _step(engine, a)  # both are registered, so both are live from the first step
    _step(engine, b)
    want = _expected(["a", "b"])
    assert _step(engine, a).held == want["a"]
    assert _step(engine, b).held == want["b"]
    assert want["a"] and want["b"] and not want["a"] & want["b"]

    (c,) = _register(engine, "c")
    third = _expected(["a", "b", "c"])
    assert _step(engine, c).held == NONE  # the others still hold its share
    # a is in the middle of syncing one of c's sources: it keeps that one for now.
    moving = sorted(want["a"] & third["c"])
    assert moving, "a gives c part of its share"
    view = _step(engine, a, busy=frozenset(moving[:1]))
    assert view.held == third["a"] | set(moving[:1])
    assert view.handover == set(moving[:1])  # told to stop after its batch
    _step(engine, b)
    assert _step(engine, c).held == third["c"] - set(moving[:1])
    assert _step(engine, a).held == third["a"]  # the batch committed: released
    assert _step(engine, c).held == third["c"]
    engine.dispose()


def test_a_stopping_daemon_keeps_only_its_busy_leases_and_a_dead_one_is_taken_over(
    db_url: str,
) -> None:
    engine = open_database(db_url)
    a, b = _register(engine, "a", "b")
    _step(engine, a)
    _step(engine, b)
    held_a = _step(engine, a).held
    busy = sorted(held_a)[0]
    with engine.begin() as conn:
        leases.daemon_stopped(conn, "a", keep=[busy])
    # a is out of the assignment at once: b claims everything but the batch a commits.
    assert _step(engine, b).held == KEYS - {busy}
    with engine.begin() as conn:
        leases.daemon_stopped(conn, "a")
    assert _step(engine, b).held == KEYS

    # c joins and takes its share; then c dies (no heartbeat): b takes it back.
    (c,) = _register(engine, "c")
    _step(engine, b)
    share_c = _step(engine, c).held
    assert share_c == _expected(["b", "c"])["c"]
    with engine.begin() as conn:
        conn.execute(
            update(daemons)
            .where(daemons.c.id == "c")
            .values(heartbeat_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    assert _step(engine, b).held == KEYS
    engine.dispose()


def test_a_restarted_daemon_clears_its_dead_predecessors(db_url: str) -> None:
    engine = open_database(db_url)
    with engine.begin() as conn:
        # A daemon killed a moment ago on this host (its pid is gone), one alive elsewhere.
        leases.register_daemon(conn, "dead", "here", 2**22 + 12345)
        leases.register_daemon(conn, "remote", "there", 1)
        leases.claim(conn, "mailbox", "rep1", "dead", timedelta(minutes=5))
        leases.register_daemon(conn, "new", "here", 4242)
        assert clear_predecessors(conn, "new", "here", alone=False) == ["dead"]
        assert {d.id for d in leases.live_daemons(conn)} == {"remote", "new"}
        assert leases.claim(conn, "mailbox", "rep1", "new", timedelta(minutes=5))
        # Alone (SQLite's lock file): every other daemon is gone.
        assert clear_predecessors(conn, "new", "here", alone=True) == ["remote"]
    engine.dispose()


def test_renewing_every_lease_is_one_statement_and_keeps_others_out(db_url: str) -> None:
    engine = open_database(db_url)
    _register(engine, "a", "b")
    short = timedelta(seconds=1)
    with engine.begin() as conn:
        leases.claim_many(conn, KEYS, "a", short)
        assert leases.held_by(conn, "a") == KEYS
        # b cannot take any of them while a lives and renews.
        assert leases.renew_all(conn, "a", timedelta(minutes=5)) == KEYS
        leases.claim_many(conn, KEYS, "b", short)
        assert leases.held_by(conn, "b") == NONE
        leases.release_many(conn, sorted(KEYS)[:10], "a")
        leases.claim_many(conn, KEYS, "b", short)
        assert leases.held_by(conn, "b") == set(sorted(KEYS)[:10])
        assert not leases.renew(conn, *sorted(KEYS)[0], "a", short)
    engine.dispose()


@pytest.mark.postgres
def test_postgres_ends_a_daemon_transaction_left_open_longer_than_a_lease(pg_admin: str) -> None:
    # A holder paused mid-batch keeps its row locks until the server ends its transaction.
    with scratch_database(pg_admin) as url:
        engine = open_database(url)
        end_abandoned_transactions(engine, "d1")
        with engine.connect() as conn:
            shown = conn.exec_driver_sql("SHOW idle_in_transaction_session_timeout").scalar()
            named = conn.exec_driver_sql("SHOW application_name").scalar()
        assert shown == f"{int(LEASE.total_seconds())}s"
        assert named == leases.session_name("d1")
        engine.dispose()


@pytest.mark.postgres
def test_a_holder_paused_mid_pipeline_is_ended_once_its_heartbeat_is_stale(pg_admin: str) -> None:
    # A holder stopped in the middle of a pipelined executemany leaves its session "active"
    # (reading the rest of the pipeline): no idle-in-transaction timeout ends it, and the
    # lease rows it locked would be skipped by every claim until it woke.
    with scratch_database(pg_admin) as url:
        held = open_database(url)
        end_abandoned_transactions(held, "a")
        engine = open_database(url)
        _a, b = _register(engine, "a", "b")
        with engine.begin() as conn:
            leases.claim_many(conn, KEYS, "a", LEASE)
        raw = held.raw_connection()
        pg = raw.driver_connection
        assert pg is not None
        pipeline = pg.pipeline().__enter__()
        cursor = pg.cursor()
        cursor.execute("UPDATE source_health SET failures = failures WHERE daemon_id = %s", ("a",))
        cursor.execute("SELECT 1")
        pg.pgconn.flush()  # sent, with no Sync: the server waits for the rest
        with engine.begin() as conn:  # a stops beating
            conn.execute(
                update(daemons)
                .where(daemons.c.id == "a")
                .values(heartbeat_at=datetime.now(UTC) - timedelta(minutes=5))
            )
        assert _step(engine, b).held == NONE  # locked: skipped, a's ended
        for _ in range(50):  # the server ends the session a moment after the signal
            if _step(engine, b).held == KEYS:
                break
            time.sleep(0.1)
        assert _step(engine, b).held == KEYS
        del pipeline
        raw.invalidate()
        held.dispose()
        engine.dispose()


def test_a_beat_reads_the_leases_held_only_when_their_number_changed(db_url: str) -> None:
    engine = open_database(db_url)
    a, b = _register(engine, "a", "b")
    _step(engine, a)
    _step(engine, b)
    share = _step(engine, a).held
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(str(args[2])))
    assert _step(engine, a).held == share
    # A count, not the rows: a thousand mailboxes held cost a beat one row read.
    assert not [s for s in statements if "source_health.kind" in s and "count" not in s]
    # b takes one of a's leases (a's lease ran out while it was paused, say): the number
    # a holds moved, so it reads which.
    taken = sorted(share)[0]
    with engine.begin() as conn:
        conn.execute(
            update(source_health)
            .where(source_health.c.kind == taken[0], source_health.c.name == taken[1])
            .values(daemon_id="b", lease_until=datetime.now(UTC) + timedelta(minutes=5))
        )
    assert _step(engine, a, claim_nothing=True).held == share - {taken}
    engine.dispose()
