"""What the store knows about each folder and calendar, as `syncd verify` needs it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, func, select

from syncd.schema.tables import (
    calendar_objects,
    calendar_quarantine,
    calendar_states,
    quarantine,
    skipped_messages,
    sources,
    verify_states,
)
from syncd.store.sql import upsert


@dataclass(frozen=True, slots=True)
class FolderKnown:
    recorded: frozenset[int]
    quarantined: frozenset[int]
    skipped: dict[int, str]  # uid -> rule


def _folder_where(table: Table, mailbox: str, folder: str, uidvalidity: int) -> list[Any]:
    c = table.c
    return [c.mailbox == mailbox, c.folder == folder, c.uidvalidity == uidvalidity]


def folder_known(conn: Connection, mailbox: str, folder: str, uidvalidity: int) -> FolderKnown:
    def uids(table: Table) -> frozenset[int]:
        query = select(table.c.uid).where(*_folder_where(table, mailbox, folder, uidvalidity))
        # One fetchall of plain ints: per-row fetching costs more than the query.
        return frozenset(conn.execute(query).scalars().all())

    skipped = conn.execute(
        select(skipped_messages.c.uid, skipped_messages.c.rule).where(
            *_folder_where(skipped_messages, mailbox, folder, uidvalidity)
        )
    )
    return FolderKnown(uids(sources), uids(quarantine), {uid: rule for uid, rule in skipped.all()})


def folder_counts(conn: Connection, mailbox: str, folder: str, uidvalidity: int) -> str:
    """Row counts of what accounts for a folder's UIDs: part of the "unchanged" fingerprint,
    so that a source row deleted (or a skip backfilled) since the last verify is noticed."""
    counts = [
        conn.scalar(
            select(func.count())
            .select_from(table)
            .where(*_folder_where(table, mailbox, folder, uidvalidity))
        )
        for table in (sources, quarantine, skipped_messages)
    ]
    return "/".join(str(n) for n in counts)


def calendar_known(
    conn: Connection, calendar: str, url: str
) -> tuple[dict[str, str], frozenset[str]]:
    """({href: ETag} remembered by calendar sync, hrefs in the calendar quarantine)."""
    where_objects = [calendar_objects.c.calendar == calendar, calendar_objects.c.url == url]
    rows = conn.execute(
        select(calendar_objects.c.href, calendar_objects.c.etag).where(*where_objects)
    )
    known = {str(href): str(etag) for href, etag in rows}
    held = frozenset(
        conn.scalars(
            select(calendar_quarantine.c.href).where(
                calendar_quarantine.c.calendar == calendar, calendar_quarantine.c.url == url
            )
        )
    )
    return known, held


def calendar_sync_state(conn: Connection, calendar: str, url: str) -> tuple[bool, str | None]:
    """(synced at least once, the sync token of the last sync)."""
    row = conn.execute(
        select(calendar_states.c.last_success_at, calendar_states.c.sync_token).where(
            calendar_states.c.calendar == calendar, calendar_states.c.url == url
        )
    ).first()
    if row is None:
        return False, None
    return row.last_success_at is not None, row.sync_token


def calendar_counts(conn: Connection, calendar: str, url: str) -> str:
    counts = [
        conn.scalar(
            select(func.count())
            .select_from(table)
            .where(table.c.calendar == calendar, table.c.url == url)
        )
        for table in (calendar_objects, calendar_quarantine)
    ]
    return "/".join(str(n) for n in counts)


def forget_sync_token(conn: Connection, calendar: str, url: str) -> None:
    """The next sync of this calendar lists every ETag and reads what it does not know:
    how `sync --repair` brings back missing objects through the normal capture path."""
    conn.execute(
        calendar_states.update()
        .where(calendar_states.c.calendar == calendar, calendar_states.c.url == url)
        .values(sync_token=None)
    )


def last_clean(
    conn: Connection, kind: str, source: str, place: str
) -> tuple[str, dict[str, Any]] | None:
    """(fingerprint, counts) of the last verify of this place that found nothing missing."""
    row = conn.execute(
        select(verify_states.c.fingerprint, verify_states.c.counts).where(
            verify_states.c.kind == kind,
            verify_states.c.source == source,
            verify_states.c.place == place,
        )
    ).first()
    if row is None:
        return None
    return str(row.fingerprint), json.loads(row.counts)


def remember_clean(
    conn: Connection, kind: str, source: str, place: str, fingerprint: str, counts: dict[str, Any]
) -> None:
    upsert(
        conn,
        verify_states,
        [
            {
                "kind": kind,
                "source": source,
                "place": place,
                "fingerprint": fingerprint,
                "counts": json.dumps(counts, sort_keys=True),
                "verified_at": datetime.now(UTC),
            }
        ],
        ["kind", "source", "place"],
        ["fingerprint", "counts", "verified_at"],
    )


def forget_clean(conn: Connection, kind: str, source: str, place: str) -> None:
    conn.execute(
        verify_states.delete().where(
            verify_states.c.kind == kind,
            verify_states.c.source == source,
            verify_states.c.place == place,
        )
    )
