"""Read side: records with their customers, participants and sources; sync status."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from syncd.schema.tables import (
    calendar_cursors,
    contact_addresses,
    customers,
    folder_cursors,
    meeting_sources,
    participants,
    quarantine,
    record_customers,
    records,
    source_states,
    sources,
)
from syncd.store.sql import chunks
from syncd.store.state import ACCOUNT


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


def source_state(account: Any, places: list[dict[str, Any]]) -> str:
    """One rule for every kind of source: an account-level error is "degraded" while it is
    transient (the next try may work) and "failing" otherwise; a failing place (a folder, a
    calendar) leaves the rest of the source working, hence "degraded"."""
    if account is None:
        return "never synced"
    if account["last_error"]:
        return "degraded" if account["last_error_kind"] == "transient" else "failing"
    if any(p["last_error"] for p in places):
        return "degraded"
    return "ok"


def _states(conn: Connection, kind: str) -> dict[str, dict[str, Any]]:
    """{source: {place: source_states row}} of one kind."""
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    query = select(source_states).where(source_states.c.kind == kind)
    for row in conn.execute(query).mappings():
        out[row["source"]][row["place"]] = row
    return out


def _held(conn: Connection, kind: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = defaultdict(list)
    query = select(quarantine).where(quarantine.c.kind == kind).order_by(quarantine.c.id)
    for row in conn.execute(query).mappings():
        out[row["source"]].append(row)
    return out


def sync_status(conn: Connection, mailbox_names: list[str]) -> list[dict[str, Any]]:
    """Per configured mailbox: its state and, per folder, the cursor and counters."""
    states = _states(conn, "mailbox")
    cursors: dict[str, dict[str, Any]] = defaultdict(dict)
    for found in conn.execute(select(folder_cursors)).mappings():
        cursors[found["mailbox"]][found["folder"]] = found
    held = _held(conn, "mailbox")
    out = []
    for name in mailbox_names:
        places = states.get(name, {})
        box = places.get(ACCOUNT)
        folders: list[dict[str, Any]] = []
        for folder in sorted((set(places) - {ACCOUNT}) | set(cursors.get(name, {}))):
            row, cursor = places.get(folder), cursors[name].get(folder)
            folders.append(
                {
                    "folder": folder,
                    "uidvalidity": cursor["uidvalidity"] if cursor else None,
                    "last_uid": cursor["last_uid"] if cursor else 0,
                    "highestmodseq": cursor["highestmodseq"] if cursor else None,
                    "messages_captured": row["captured"] if row else 0,
                    "messages_skipped": row["skipped"] if row else 0,
                    "last_success_at": row["last_success_at"] if row else None,
                    "last_error": row["last_error"] if row else None,
                    "last_error_at": row["last_error_at"] if row else None,
                }
            )
        out.append(
            {
                "mailbox": name,
                "state": source_state(box, folders),
                "last_attempt_at": box["last_attempt_at"] if box else None,
                "last_success_at": box["last_success_at"] if box else None,
                "last_error": box["last_error"] if box else None,
                "last_error_kind": box["last_error_kind"] if box else None,
                "messages_captured": sum(f["messages_captured"] for f in folders),
                "folders": folders,
                "quarantined": [
                    {
                        "folder": q["place"],
                        "uid": int(q["item"]),
                        "reason": q["reason"],
                        "at": q["created_at"],
                    }
                    for q in held.get(name, [])
                ],
            }
        )
    return out


def record_count(conn: Connection) -> int:
    return int(conn.scalar(select(func.count()).select_from(records)) or 0)


def calendar_status(conn: Connection, names: list[str]) -> list[dict[str, Any]]:
    """Per configured [[calendar]]: account state, and per calendar its last sync and errors."""
    states = _states(conn, "calendar")
    cursors: dict[str, dict[str, Any]] = defaultdict(dict)
    for found in conn.execute(select(calendar_cursors)).mappings():
        cursors[found["calendar"]][found["url"]] = found
    held = _held(conn, "calendar")
    out = []
    for name in names:
        places = states.get(name, {})
        account = places.get(ACCOUNT)
        calendars: list[dict[str, Any]] = []
        for url in (set(places) - {ACCOUNT}) | set(cursors.get(name, {})):
            row, cursor = places.get(url), cursors[name].get(url)
            calendars.append(
                {
                    "collection": cursor["display_name"] if cursor else "",
                    "url": url,
                    "last_success_at": row["last_success_at"] if row else None,
                    "last_error": row["last_error"] if row else None,
                    "meetings_captured": row["captured"] if row else 0,
                    "sync_token": bool(cursor and cursor["sync_token"]),
                }
            )
        calendars.sort(key=lambda c: (c["collection"], c["url"]))
        out.append(
            {
                "calendar": name,
                "state": source_state(account, calendars),
                "last_success_at": account["last_success_at"] if account else None,
                "last_error": account["last_error"] if account else None,
                "last_error_kind": account["last_error_kind"] if account else None,
                "meetings_captured": sum(c["meetings_captured"] for c in calendars),
                "calendars": calendars,
                "quarantined": [
                    {"url": q["place"], "href": q["item"], "reason": q["reason"]}
                    for q in held.get(name, [])
                ],
            }
        )
    return out
