"""Writing meeting occurrences from one calendar: records, participants, links, sources, token.

Everything learnt from one sync of one calendar commits in one transaction with the
new sync token and ETags, so a crash repeats the sync and replaying it changes nothing.
What changes is decided in the domain (``domain/meeting_changes.plan_batch``) from what
this module reads; this module only reads the knowledge and applies the plan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, select
from sqlalchemy.exc import StatementError

from syncd.domain.bounds import bound_reason
from syncd.domain.items import MeetingItem
from syncd.domain.meeting_changes import plan_batch
from syncd.schema.tables import (
    calendar_cursors,
    calendar_objects,
    quarantine,
)
from syncd.store import events, meeting_records, outbox, state
from syncd.store.capture import queue_sightings, refused_values
from syncd.store.events import RECORD_CREATED, RECORD_UPDATED
from syncd.store.sql import chunks, upsert


@dataclass(slots=True)
class CalendarBatch:
    calendar: str
    url: str
    token: str | None
    window_start: datetime
    window_end: datetime
    objects: dict[str, tuple[str, list[MeetingItem]]] = field(
        default_factory=dict
    )  # href -> etag, items
    broken: dict[str, tuple[str, str]] = field(default_factory=dict)  # href -> etag, reason
    # Objects stored with some of their content cut by the limits: href -> reason.  Listed
    # with the quarantine (so `syncd status` shows them) though their meetings are kept.
    capped: dict[str, str] = field(default_factory=dict)
    next_starts: dict[str, datetime | None] = field(default_factory=dict)  # href -> after window
    unread: dict[str, str] = field(default_factory=dict)  # href -> etag: history, not downloaded
    deleted: list[str] = field(default_factory=list)
    plus_addressing: bool = True


# Statements built once: an IN list given as an expanding parameter costs one compile,
# where a literal list is coerced element by element on every call.
_UNQUARANTINE = delete(quarantine).where(
    quarantine.c.kind == "calendar",
    quarantine.c.source == bindparam("calendar"),
    quarantine.c.place == bindparam("url"),
    quarantine.c.item.in_(bindparam("hrefs", expanding=True)),
)


def save_isolating(
    engine: Engine, batch: CalendarBatch, *, fence: Callable[[Connection], None] | None = None
) -> dict[str, int]:
    """Save a calendar's batch in one transaction; when the database refuses its values,
    find the objects it refuses (halving the batch in rolled-back trials), quarantine
    those, and commit the rest.  A failure that is not about the values (a lost connection,
    a lock, a lost lease) or that no single object causes is raised as it was.

    ``fence`` runs first in every committing transaction (the lease check)."""
    try:
        with engine.begin() as conn:
            if fence is not None:
                fence(conn)
            return save_calendar_batch(conn, batch)
    except StatementError as err:
        if not batch.objects or refused_values(err) is None:
            raise
        failure = err
    bad = _refused(engine, batch, sorted(batch.objects))
    if not bad:
        raise failure
    for href, reason in bad.items():
        etag, _ = batch.objects.pop(href)
        batch.broken[href] = (etag, reason)
        batch.capped.pop(href, None)
    with engine.begin() as conn:
        if fence is not None:
            fence(conn)
        return save_calendar_batch(conn, batch)


def _refused(engine: Engine, batch: CalendarBatch, hrefs: list[str]) -> dict[str, str]:
    reason = _trial(engine, batch, hrefs)
    if reason is None:
        return {}
    if len(hrefs) == 1:
        return {hrefs[0]: reason}
    half = len(hrefs) // 2
    return {**_refused(engine, batch, hrefs[:half]), **_refused(engine, batch, hrefs[half:])}


def _trial(engine: Engine, batch: CalendarBatch, hrefs: list[str]) -> str | None:
    """Why the database refuses these objects' values alone (rolled back either way), or
    None; any other failure propagates."""
    trial = replace(
        batch,
        objects={h: batch.objects[h] for h in hrefs},
        broken={},
        capped={},
        deleted=[],
        unread={},
    )
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            save_calendar_batch(conn, trial)
        except StatementError as err:
            reason = refused_values(err)
            if reason is None:
                raise
            return reason
        finally:
            transaction.rollback()
    return None


def save_calendar_batch(conn: Connection, batch: CalendarBatch) -> dict[str, int]:
    now = datetime.now(UTC)
    objects = {href: found for href, (_, found) in batch.objects.items()}
    known = meeting_records.load_known(conn, batch.calendar, batch.url, objects, batch.deleted)
    change = plan_batch(
        objects,
        batch.deleted,
        known,
        window_start=batch.window_start,
        window_end=batch.window_end,
    )
    counts = {
        "created": len(change.create),
        "updated": len(change.update),
        "cancelled": len(change.cancel),
        "quarantined": len(batch.broken),
    }
    created, changed = meeting_records.apply(conn, batch.calendar, batch.url, change, known, now)
    _remember(conn, batch, {href: etag for href, (etag, _) in batch.objects.items()})
    _remember(conn, batch, batch.unread)
    # Read again, or gone from the server: either way no longer held back.
    for hrefs in chunks([*batch.objects, *batch.deleted]):
        conn.execute(
            _UNQUARANTINE, {"calendar": batch.calendar, "url": batch.url, "hrefs": list(hrefs)}
        )

    for hrefs in chunks(batch.deleted):
        conn.execute(
            delete(calendar_objects).where(
                calendar_objects.c.calendar == batch.calendar,
                calendar_objects.c.url == batch.url,
                calendar_objects.c.href.in_(hrefs),
            )
        )

    _remember(conn, batch, {href: etag for href, (etag, _) in batch.broken.items()})
    listed = {
        **{href: (batch.objects[href][0], reason) for href, reason in batch.capped.items()},
        **batch.broken,
    }
    # Not fetched again until it changes; one entry per object, whatever its ETag was.
    if listed:
        conn.execute(
            _UNQUARANTINE, {"calendar": batch.calendar, "url": batch.url, "hrefs": list(listed)}
        )
        conn.execute(
            quarantine.insert(),
            [
                state.quarantine_row(
                    "calendar", batch.calendar, batch.url, href, etag, bound_reason(reason), now
                )
                for href, (etag, reason) in listed.items()
            ],
        )

    queue_sightings(
        conn,
        batch.calendar,
        ((i.key, i.starts_at, i.participants) for i in {**change.create, **change.update}.values()),
        plus_addressing=batch.plus_addressing,
    )
    upsert(
        conn,
        calendar_cursors,
        [{"calendar": batch.calendar, "url": batch.url, "sync_token": batch.token}],
        ["calendar", "url"],
        ["sync_token"],
    )
    state.succeeded(conn, "calendar", batch.calendar, batch.url)
    state.counted(conn, "calendar", batch.calendar, batch.url, captured=counts["created"])
    # Last: on PostgreSQL the outbox lock is held from here to the commit.  Taken before the
    # records are read for their events: a daemon writing the same meeting from another
    # calendar at once is then read committed, and the newer event holds both sources.
    if created or changed:
        events.lock(conn)
    outbox.emit_records(conn, RECORD_CREATED, created, now)
    outbox.emit_records(conn, RECORD_UPDATED, changed, now)
    return counts


def _remember(conn: Connection, batch: CalendarBatch, etags: dict[str, str]) -> None:
    upsert(
        conn,
        calendar_objects,
        [
            {
                "calendar": batch.calendar,
                "url": batch.url,
                "href": h,
                "etag": e,
                "next_start_at": batch.next_starts.get(h),
            }
            for h, e in etags.items()
        ],
        ["calendar", "url", "href"],
        ["etag", "next_start_at"],
    )


def due_again(conn: Connection, calendar: str, url: str, window_end: datetime) -> dict[str, str]:
    """{href: ETag} of unchanged objects whose next occurrence the window now reaches."""
    rows = conn.execute(
        select(calendar_objects.c.href, calendar_objects.c.etag).where(
            calendar_objects.c.calendar == calendar,
            calendar_objects.c.url == url,
            calendar_objects.c.next_start_at <= window_end,
        )
    )
    return {href: etag for href, etag in rows}


def known_etags(conn: Connection, calendar: str, url: str) -> dict[str, str]:
    rows = conn.execute(
        select(calendar_objects.c.href, calendar_objects.c.etag).where(
            calendar_objects.c.calendar == calendar, calendar_objects.c.url == url
        )
    )
    return {href: etag for href, etag in rows}


def stored_calendars(conn: Connection, calendar: str) -> list[dict[str, Any]]:
    """The cursors of the source's calendars: URL, display name, sync token, discovery time."""
    return [
        dict(row)
        for row in conn.execute(
            select(calendar_cursors).where(calendar_cursors.c.calendar == calendar)
        ).mappings()
    ]


def remember_calendars(conn: Connection, calendar: str, found: Iterable[tuple[str, str]]) -> None:
    now = datetime.now(UTC)
    upsert(
        conn,
        calendar_cursors,
        [
            {"calendar": calendar, "url": url, "display_name": name, "discovered_at": now}
            for url, name in found
        ],
        ["calendar", "url"],
        ["display_name", "discovered_at"],
    )


def calendar_failed(
    conn: Connection, calendar: str, url: str, error: str, kind: str | None = None
) -> None:
    """The account (url "") or one calendar failed; ``kind`` is RemoteError.kind."""
    state.failed(conn, "calendar", calendar, url, error, kind)


def calendar_ok(conn: Connection, calendar: str) -> None:
    """The account-level row: login and discovery worked."""
    state.succeeded(conn, "calendar", calendar)
