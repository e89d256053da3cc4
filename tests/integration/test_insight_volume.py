"""Customer insight at volume on SQLite and PostgreSQL: the SQL aggregates against a
brute-force reading of every row (the oracle), and the plans use the indexes of 0015."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, select

from syncd.config_file import parse_config
from syncd.engine.quiet import quiet_followups
from syncd.schema.tables import record_customers, records, tasks
from syncd.store.database import open_database
from syncd.store.insight import customer_overview, first_replies
from tests.servers.insight_seed import REPS, Seeded, seed
from tests.servers.postgres import scratch_database

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
MAILBOXES = {rep.split("@")[0]: rep for rep in REPS}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Engine, Seeded]]:
    """One seeded database per engine for the whole module: the tests only read it (the one
    that writes rolls back)."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('insight') / 'syncd.db'}"
        else:
            url = stack.enter_context(scratch_database(request.getfixturevalue("pg_admin")))
        engine = open_database(url)
        stack.callback(engine.dispose)
        yield engine, seed(engine, n_records=3000, n_customers=40, now=NOW)


def everything(engine: Engine) -> tuple[dict[int, Any], dict[int, list[int]]]:
    """Every record and every link: what the SQL must never need, here as the oracle."""
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(records))}
        links: dict[int, list[int]] = defaultdict(list)
        for rid, cid in conn.execute(
            select(record_customers.c.record_id, record_customers.c.customer_id)
        ):
            links[cid].append(rid)
    return rows, links


def test_the_customer_list_agrees_with_every_record_read_one_by_one(
    seeded: tuple[Engine, Seeded],
) -> None:
    engine, world = seeded
    window = NOW - timedelta(days=90)
    with engine.connect() as conn:
        listed = {row["id"]: row for row in customer_overview(conn, now=NOW, window_start=window)}
        open_tasks = defaultdict(int)
        for (cid,) in conn.execute(
            select(tasks.c.customer_id).where(tasks.c.status.in_(("open", "snoozed")))
        ):
            open_tasks[cid] += 1
    rows, links = everything(engine)
    assert len(listed) == world.customers
    for cid, row in listed.items():
        mine = [rows[rid] for rid in links[cid]]
        # Contact: emails and meetings neither cancelled nor declined.
        past = [r for r in mine if r.occurred_at <= NOW and r.status in (None, "scheduled")]
        planned = [r for r in mine if r.kind == "meeting" and r.status == "scheduled"]
        expected = {
            "last_contact_at": max((r.occurred_at for r in past), default=None),
            "last_inbound_at": max((r.occurred_at for r in past if r.direction == "inbound"), default=None),
            "last_outbound_at": max((r.occurred_at for r in past if r.direction == "outbound"), default=None),
            "next_meeting_at": min((r.starts_at for r in planned if r.starts_at > NOW), default=None),
            "emails": sum(r.kind == "email" and window <= r.occurred_at for r in past),
            "meetings": sum(window <= r.occurred_at for r in past if r in planned),
            "open_tasks": open_tasks[cid],
        }  # fmt: skip
        assert {key: row[key] for key in expected} == expected, cid
    assert any(row["next_meeting_at"] for row in listed.values())
    assert any(row["open_tasks"] for row in listed.values())


def test_first_replies_agree_with_walking_every_thread(seeded: tuple[Engine, Seeded]) -> None:
    engine, _ = seeded
    since = NOW - timedelta(days=365)
    with engine.connect() as conn:
        found = {
            (a.record_id, a.customer_id): (a.replied_at, a.mailbox)
            for a in first_replies(conn, since=since, until=NOW, mailboxes=MAILBOXES)
        }
    rows, links = everything(engine)
    customer_of = {rid: cid for cid, rids in links.items() for rid in rids}
    threads: dict[str, list[Any]] = defaultdict(list)
    for r in rows.values():
        if r.thread_key:
            threads[r.thread_key].append(r)
    expected = {}
    for r in rows.values():
        if r.kind == "email" and r.direction == "inbound" and since <= r.occurred_at <= NOW:
            later = [
                o.occurred_at for o in threads[r.thread_key]
                if o.direction == "outbound" and (o.occurred_at, o.id) > (r.occurred_at, r.id)
            ]  # fmt: skip
            expected[(r.id, customer_of[r.id])] = min(later, default=None)
    assert {key: replied for key, (replied, _) in found.items()} == expected
    assert all(mailbox in MAILBOXES for _, mailbox in found.values())
    answered = sum(v is not None for v in expected.values())
    assert 0 < answered < len(expected)  # both kinds are there to count


def test_gone_quiet_finds_exactly_the_customers_gone_quiet(seeded: tuple[Engine, Seeded]) -> None:
    engine, world = seeded
    config = parse_config(
        {"tasks": {"lookback_days": 60},
         "mailbox": [{"name": box, "owner": rep, "host": "127.0.0.1", "username": box, "password": "x"}
                     for box, rep in MAILBOXES.items()]}
    )  # fmt: skip
    lookback = NOW - timedelta(days=60)
    with engine.begin() as conn:
        wanted, closings = quiet_followups(conn, config, NOW, lookback)
    rows, links = everything(engine)
    expected = {}
    for cid, rids in links.items():
        mine = sorted(
            (rows[rid] for rid in rids if rows[rid].status in (None, "scheduled")),
            key=lambda r: (r.occurred_at, r.id),
        )
        if not mine:
            continue
        last = mine[-1]
        due = last.occurred_at + timedelta(days=30)
        busy = sum(r.occurred_at >= last.occurred_at - timedelta(days=90) for r in mine)
        if lookback <= due <= NOW and busy >= 3:
            expected[cid] = (last.id, REPS[cid % len(REPS)], due)
    assert {w.customer_id: (w.record_id, w.owner, w.due_at) for w in wanted} == expected
    assert set(expected) <= set(world.quiet) and expected  # the seeded quiet ones, some of them
    assert closings == []


def _plan(engine: Engine, run: Any) -> str:
    """The plan of the first statement ``run`` executes, as the database explains it."""
    seen: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if not statement.startswith("SET"):
            seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", grab)
    try:
        with engine.connect() as conn:
            run(conn)
    finally:
        sa.event.remove(engine, "before_cursor_execute", grab)
    statement, parameters = seen[0]
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            return "\n".join(str(row[-1]) for row in rows)
        # A few thousand rows fit in a page or two: make the planner show what it would do
        # at volume, where a sequential scan would cost what it saves here.
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        return "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + statement, parameters))


def test_the_plans_read_the_indexes_not_the_tables(seeded: tuple[Engine, Seeded]) -> None:
    engine, _ = seeded
    since = NOW - timedelta(days=365)
    replies = _plan(engine, lambda c: first_replies(c, since=since, until=NOW, mailboxes=MAILBOXES))
    listing = _plan(engine, lambda c: customer_overview(c, now=NOW, window_start=since))
    if engine.dialect.name == "sqlite":
        assert "COVERING INDEX ix_records_thread_key_occurred_at_id_direction" in replies
        assert "COVERING INDEX ix_provenance_record_id_id_mailbox" in replies
        assert "ix_record_customers_customer_id_record_id" in listing
    else:
        assert "Index Only Scan using ix_records_thread_key_occurred_at_id_direction" in replies
        assert "Index Only Scan using ix_provenance_record_id_id_mailbox" in replies
        assert "Seq Scan" not in listing


def test_gone_quiet_asks_the_rep_of_the_latest_record_that_has_one(
    seeded: tuple[Engine, Seeded],
) -> None:
    """The customer's last record names none of ours (a forwarded copy, a Bcc): the task is
    still about that last record, for the rep of the latest record naming one of ours."""
    engine, world = seeded
    config = parse_config(
        {"tasks": {"lookback_days": 60},
         "mailbox": [{"name": box, "owner": rep, "host": "127.0.0.1", "username": box, "password": "x"}
                     for box, rep in MAILBOXES.items()]}
    )  # fmt: skip
    lookback = NOW - timedelta(days=60)
    with engine.connect() as conn, conn.begin() as transaction:
        before = {w.customer_id: w for w in quiet_followups(conn, config, NOW, lookback)[0]}
        cid, task = next(iter(before.items()))
        last = conn.execute(
            select(records.c.occurred_at).where(records.c.id == task.record_id)
        ).scalar_one()
        orphan = conn.execute(
            records.insert().values(
                key="email:orphan@test", kind="email", direction="inbound", subject="fwd",
                occurred_at=last + timedelta(minutes=1), thread_key="orphan@test",
                message_id="orphan@test", created_at=NOW,
            )
        ).inserted_primary_key[0]  # fmt: skip
        conn.execute(
            record_customers.insert().values(record_id=orphan, customer_id=cid, link="manual")
        )
        after = {w.customer_id: w for w in quiet_followups(conn, config, NOW, lookback)[0]}
        transaction.rollback()  # the module's other tests read the seeded rows as they were
    assert (
        after[cid].record_id == orphan and after[cid].owner == task.owner == REPS[cid % len(REPS)]
    )
    assert cid in world.quiet
