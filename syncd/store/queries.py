"""Read side: records with their customers, participants and sources; sync status.

The sync status queries themselves are in store/status_read.py (plain SQL, so that
``syncd status`` starts without SQLAlchemy); these run them on a SQLAlchemy connection.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from syncd.schema.tables import (
    contact_addresses,
    customers,
    meeting_sources,
    participants,
    record_customers,
    records,
    sources,
)
from syncd.store import status_read
from syncd.store.sql import chunks


def list_records(
    conn: Connection,
    *,
    customer_id: int | None = None,
    contact_address: str | None = None,
    since: datetime | None = None,
    kind: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Records newest first, each with customers, participants and sources, as plain dicts
    with datetimes; a meeting's ``status`` is the stored one (the CLI shows ``held`` once
    it has ended)."""
    query = select(records).order_by(records.c.occurred_at.desc(), records.c.id.desc())
    if customer_id is not None:
        query = query.where(
            records.c.id.in_(
                select(record_customers.c.record_id).where(
                    record_customers.c.customer_id == customer_id
                )
            )
        )
    if contact_address is not None:
        query = query.where(
            records.c.id.in_(
                select(participants.c.record_id).where(participants.c.address == contact_address)
            )
        )
    if since is not None:
        query = query.where(records.c.occurred_at >= since)
    if kind is not None:
        query = query.where(records.c.kind == kind)
    if limit is not None:
        query = query.limit(limit)
    rows = conn.execute(query).mappings().all()
    ids = [row["id"] for row in rows]
    linked: dict[int, list[dict[str, Any]]] = defaultdict(list)
    people: dict[int, list[dict[str, Any]]] = defaultdict(list)
    where: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for part in chunks(ids):
        for rid, cid, name, link in conn.execute(
            select(
                record_customers.c.record_id,
                customers.c.id,
                customers.c.name,
                record_customers.c.link,
            )
            .join(customers, customers.c.id == record_customers.c.customer_id)
            .where(record_customers.c.record_id.in_(part))
            .order_by(customers.c.name)
        ):
            linked[rid].append({"id": cid, "name": name, "link": link})
        for p in conn.execute(
            select(participants)
            .where(participants.c.record_id.in_(part))
            .order_by(participants.c.id)
        ).mappings():
            people[p["record_id"]].append(
                {
                    "address": p["address"],
                    "name": p["name"],
                    "role": p["role"],
                    "contact_id": p["contact_id"],
                }
            )
        for m in conn.execute(
            select(meeting_sources)
            .where(meeting_sources.c.record_id.in_(part))
            .order_by(meeting_sources.c.id)
        ).mappings():
            where[m["record_id"]].append(
                {"calendar": m["calendar"], "url": m["url"], "href": m["href"]}
            )
        for s in conn.execute(
            select(sources)
            .where(sources.c.record_id.in_(part))
            .order_by(sources.c.mailbox, sources.c.folder)
        ).mappings():
            where[s["record_id"]].append(
                {"mailbox": s["mailbox"], "folder": s["folder"], "uid": s["uid"]}
            )
    return [
        {
            "id": row["id"],
            "kind": row["kind"],
            "direction": row["direction"],
            "subject": row["subject"],
            "snippet": row["snippet"],
            "body": row["body"],
            "occurred_at": row["occurred_at"],
            "customers": linked.get(row["id"], []),
            "participants": people.get(row["id"], []),
            "thread_id": row["thread_key"],
            "message_id": row["message_id"],
            "sources": where.get(row["id"], []),
            **(_meeting_fields(row) if row["kind"] == "meeting" else {}),
        }
        for row in rows
    ]


def _meeting_fields(row: Any) -> dict[str, Any]:
    return {
        "status": row["status"],
        "starts_at": row["starts_at"],
        "ends_at": row["ends_at"],
        "ical_uid": row["ical_uid"],
        "recurrence_id": row["recurrence_id"] or None,
        "organizer": row["organizer"],
    }


def contact_exists(conn: Connection, address: str) -> bool:
    return (
        conn.execute(
            select(contact_addresses.c.id).where(contact_addresses.c.address == address)
        ).first()
        is not None
    )


def sync_status(conn: Connection, mailbox_names: list[str]) -> list[dict[str, Any]]:
    """Per configured mailbox: its state and, per folder, the cursor and counters."""
    return status_read.sync_status(status_read.Reader.of(conn), mailbox_names)


def record_count(conn: Connection) -> int:
    return int(conn.scalar(select(func.count()).select_from(records)) or 0)


def calendar_status(conn: Connection, names: list[str]) -> list[dict[str, Any]]:
    """Per configured [[calendar]]: account state, and per calendar its last sync and errors."""
    return status_read.calendar_status(status_read.Reader.of(conn), names)
