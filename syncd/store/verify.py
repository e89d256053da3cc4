"""What the store knows about each folder and calendar, as `syncd verify` needs it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, func, select

from syncd.schema.tables import (
    calendar_cursors,
    calendar_objects,
    provenance,
    quarantine,
    skipped_messages,
    source_states,
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
    held = conn.scalars(select(quarantine.c.item).where(*_held_where(mailbox, folder, uidvalidity)))
    return FolderKnown(
        uids(provenance),
        frozenset(int(uid) for uid in held),
        {uid: rule for uid, rule in skipped.all()},
    )


def _held_where(mailbox: str, folder: str, uidvalidity: int) -> list[Any]:
    """The quarantine entries of one folder at one UIDVALIDITY (item: UID, version: UIDVALIDITY)."""
    c = quarantine.c
    return [
        c.kind == "mailbox",
        c.source == mailbox,
        c.place == folder,
        c.version == str(uidvalidity),
    ]


def _calendar_held_where(calendar: str, url: str) -> list[Any]:
    c = quarantine.c
    return [c.kind == "calendar", c.source == calendar, c.place == url]


def folder_counts(conn: Connection, mailbox: str, folder: str, uidvalidity: int) -> str:
    """Row counts of what accounts for a folder's UIDs: part of the "unchanged" fingerprint,
    so that a source row deleted (or a skip backfilled) since the last verify is noticed."""
    wheres = [
        (provenance, _folder_where(provenance, mailbox, folder, uidvalidity)),
        (quarantine, _held_where(mailbox, folder, uidvalidity)),
        (skipped_messages, _folder_where(skipped_messages, mailbox, folder, uidvalidity)),
    ]
    counts = [
        conn.scalar(select(func.count()).select_from(table).where(*where))
        for table, where in wheres
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
        conn.scalars(select(quarantine.c.item).where(*_calendar_held_where(calendar, url)))
    )
    return known, held


def calendar_sync_state(conn: Connection, calendar: str, url: str) -> tuple[bool, str | None]:
    """(synced at least once, the sync token of the last sync)."""
    synced = conn.scalar(
        select(source_states.c.last_success_at).where(
            source_states.c.kind == "calendar",
            source_states.c.source == calendar,
            source_states.c.place == url,
        )
    )
    token = conn.scalar(
        select(calendar_cursors.c.sync_token).where(
            calendar_cursors.c.calendar == calendar, calendar_cursors.c.url == url
        )
    )
    return synced is not None, token


def calendar_counts(conn: Connection, calendar: str, url: str) -> str:
    wheres = [
        (
            calendar_objects,
            [calendar_objects.c.calendar == calendar, calendar_objects.c.url == url],
        ),
        (quarantine, _calendar_held_where(calendar, url)),
    ]
    counts = [
        conn.scalar(select(func.count()).select_from(table).where(*where))
        for table, where in wheres
    ]
    return "/".join(str(n) for n in counts)


def forget_sync_token(conn: Connection, calendar: str, url: str) -> None:
    """The next sync of this calendar lists every ETag and reads what it does not know:
    how `sync --repair` brings back missing objects through the normal capture path."""
    conn.execute(
        calendar_cursors.update()
        .where(calendar_cursors.c.calendar == calendar, calendar_cursors.c.url == url)
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
