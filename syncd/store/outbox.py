"""Events about records and tasks, rendered from the database in bulk and emitted.

Each change point calls ``emit_records`` (or store/tasks.py's ``emit_tasks``) last in its transaction with
the ids it changed: the payloads are the very objects ``syncd records list --json`` and
``syncd tasks list --json`` print (``domain/payloads``), read after the change, a few
queries per 500 ids, so a backfill of thousands of messages pays little for its events.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from syncd.domain.payloads import record_json
from syncd.schema.tables import customers, records
from syncd.store import events
from syncd.store.events import RECORD_CREATED, Event
from syncd.store.queries import RecordRow, records_by_id, shape
from syncd.store.sql import chunks


def record_events(
    conn: Connection, type_: str, record_ids: Iterable[int], now: datetime | None = None
) -> list[Event]:
    now = now or datetime.now(UTC)
    return [
        Event(type_, f"record:{row['id']}", record_json(row, now), row["occurred_at"])
        for row in records_by_id(conn, record_ids)
    ]


def emit_records(
    conn: Connection, type_: str, record_ids: Iterable[int], now: datetime | None = None
) -> None:
    """One ``type_`` event per record, its data the record as it is now in this transaction."""
    events.emit_many(conn, record_events(conn, type_, record_ids, now))


def emit_created_emails(
    conn: Connection,
    created: list[dict[str, Any]],
    people: list[dict[str, Any]],
    links: list[dict[str, Any]],
    mail_sources: list[dict[str, Any]],
    now: datetime,
) -> None:
    """``record.created`` for the email records a capture batch created, shaped (by
    ``queries.shape``, the one shape of a record) from the rows the batch wrote: ``created``
    (records rows with their ids), and the participant, link and source rows it wrote for
    them and others (first row per key wins, as ON CONFLICT DO NOTHING kept it).  Only the
    customers' names are read."""
    if not created:
        return
    rows = [
        RecordRow(
            r["id"], r["kind"], r["direction"], r["subject"], r["snippet"], r["body"],
            r["occurred_at"].astimezone(UTC), r["thread_key"], r["message_id"],
        )
        for r in created
    ]  # fmt: skip
    wanted = {row.id for row in rows}
    seen: set[tuple[int, str, str]] = set()
    who = []
    for p in people:
        key = (p["record_id"], p["address"], p["role"])
        if p["record_id"] in wanted and key not in seen:
            seen.add(key)
            who.append((p["record_id"], p["address"], p["name"], p["role"], p["contact_id"]))
    mine = [link for link in links if link["record_id"] in wanted]
    names = _customer_names(conn, {link["customer_id"] for link in mine})
    shaped = shape(
        rows,
        [(lk["record_id"], lk["customer_id"], names[lk["customer_id"]], lk["link"]) for lk in mine],
        who,
        [],
        [(s["record_id"], s["mailbox"], s["folder"], s["uid"]) for s in mail_sources],
    )
    events.emit_many(
        conn,
        [
            Event(RECORD_CREATED, f"record:{row['id']}", record_json(row, now), row["occurred_at"])
            for row in shaped
        ],
    )


def _customer_names(conn: Connection, ids: set[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for part in chunks(sorted(ids)):
        out.update(
            (cid, name)
            for cid, name in conn.execute(
                select(customers.c.id, customers.c.name).where(customers.c.id.in_(part))
            )
        )
    return out


def occurred_at(conn: Connection, record_ids: list[int]) -> dict[int, datetime]:
    out: dict[int, datetime] = {}
    for part in chunks(sorted(set(record_ids))):
        out.update(
            (rid, when)
            for rid, when in conn.execute(
                select(records.c.id, records.c.occurred_at).where(records.c.id.in_(part))
            )
        )
    return out
