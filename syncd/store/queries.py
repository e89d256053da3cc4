"""Read side: records with their customers, participants and sources; sync status."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from syncd.schema.tables import (
    calendar_quarantine,
    calendar_states,
    contact_addresses,
    customers,
    folder_states,
    mailbox_states,
    meeting_sources,
    participants,
    quarantine,
    record_customers,
    records,
    sources,
)
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
    """Per configured mailbox: its state and, per folder, the cursor and counters (times
    as datetimes; the CLI formats them)."""
    boxes = {row["mailbox"]: row for row in conn.execute(select(mailbox_states)).mappings()}
    folders: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in conn.execute(select(folder_states).order_by(folder_states.c.folder)).mappings():
        folders[row["mailbox"]].append(
            {
                "folder": row["folder"],
                "uidvalidity": row["uidvalidity"],
                "last_uid": row["last_uid"],
                "highestmodseq": row["highestmodseq"],
                "messages_captured": row["messages_captured"],
                "messages_skipped": row["messages_skipped"],
                "last_success_at": row["last_success_at"],
                "last_error": row["last_error"],
                "last_error_at": row["last_error_at"],
            }
        )
    held: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in conn.execute(select(quarantine).order_by(quarantine.c.id)).mappings():
        held[row["mailbox"]].append(
            {
                "folder": row["folder"],
                "uid": row["uid"],
                "reason": row["reason"],
                "at": row["created_at"],
            }
        )
    out = []
    for name in mailbox_names:
        box = boxes.get(name)
        if box is None:
            state = "never synced"
        elif box["last_error"]:
            state = "failing" if box["last_error_kind"] != "transient" else "degraded"
        elif any(f["last_error"] for f in folders.get(name, [])):
            state = "degraded"
        else:
            state = "ok"
        out.append(
            {
                "mailbox": name,
                "state": state,
                "last_attempt_at": box["last_attempt_at"] if box else None,
                "last_success_at": box["last_success_at"] if box else None,
                "last_error": box["last_error"] if box else None,
                "last_error_kind": box["last_error_kind"] if box else None,
                "messages_captured": sum(f["messages_captured"] for f in folders.get(name, [])),
                "folders": folders.get(name, []),
                "quarantined": held.get(name, []),
            }
        )
    return out


def record_count(conn: Connection) -> int:
    return int(conn.scalar(select(func.count()).select_from(records)) or 0)


def calendar_status(conn: Connection, names: list[str]) -> list[dict[str, Any]]:
    """Per configured [[calendar]]: account state, and per calendar its last sync and errors."""
    rows: dict[str, list[Any]] = defaultdict(list)
    for row in conn.execute(
        select(calendar_states).order_by(calendar_states.c.display_name)
    ).mappings():
        rows[row["calendar"]].append(row)
    held: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in conn.execute(
        select(calendar_quarantine).order_by(calendar_quarantine.c.id)
    ).mappings():
        held[row["calendar"]].append(
            {"url": row["url"], "href": row["href"], "reason": row["reason"]}
        )
    out = []
    for name in names:
        account = next((r for r in rows[name] if r["url"] == ""), None)
        calendars = [
            {
                "collection": r["display_name"],
                "url": r["url"],
                "last_success_at": r["last_success_at"],
                "last_error": r["last_error"],
                "meetings_captured": r["meetings_captured"],
                "sync_token": bool(r["sync_token"]),
            }
            for r in rows[name]
            if r["url"] != ""
        ]
        if account is None:
            state = "never synced"
        elif account["last_error"]:
            state = "failing"
        elif any(c["last_error"] for c in calendars):
            state = "degraded"
        else:
            state = "ok"
        out.append(
            {
                "calendar": name,
                "state": state,
                "last_success_at": account["last_success_at"] if account else None,
                "last_error": account["last_error"] if account else None,
                "meetings_captured": sum(c["meetings_captured"] for c in calendars),
                "calendars": calendars,
                "quarantined": held.get(name, []),
            }
        )
    return out
