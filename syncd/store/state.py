"""Sync state of every source: health per source and place (one model for every kind), and
the mail connector's folder cursors.

Health lives in ``source_states``: one row per (kind, source) with place "" for the account,
one per folder or calendar.  Cursors are each connector's checkpoint and stay per kind
(``folder_cursors`` here, ``calendar_cursors`` and ``calendar_objects`` in store/meetings.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, case, delete, or_, select

from syncd.engine.imap.unchanged import Cursor as Cursor  # where its callers long found it
from syncd.schema.tables import folder_cursors, provenance, source_states
from syncd.store.sql import chunks, upsert, upsert_planned
from syncd.store.status_read import ACCOUNT  # "": the account-level row


def _row(kind: str, source: str, place: str, **values: object) -> dict[str, object]:
    return {"kind": kind, "source": source, "place": place, "captured": 0, "skipped": 0, **values}


def _where(kind: str, source: str, place: str) -> list[object]:
    c = source_states.c
    return [c.kind == kind, c.source == source, c.place == place]


def attempted(conn: Connection, kind: str, source: str) -> None:
    """A sync of the source starts (account row)."""
    upsert(
        conn,
        source_states,
        [_row(kind, source, ACCOUNT, last_attempt_at=datetime.now(UTC))],
        ["kind", "source", "place"],
        ["last_attempt_at"],
    )


def succeeded(conn: Connection, kind: str, source: str, *places: str) -> None:
    """The account (no place, or place "") or each place synced: its error, if any, is over."""
    now = datetime.now(UTC)
    upsert(
        conn,
        source_states,
        [_row(kind, source, place, last_success_at=now) for place in places or (ACCOUNT,)],
        ["kind", "source", "place"],
        lambda ex: {
            "last_success_at": ex.last_success_at,
            "last_error": None,
            "last_error_kind": None,
            "last_error_at": None,
        },
    )


def failed(
    conn: Connection, kind: str, source: str, place: str, error: str, error_kind: str | None
) -> None:
    """The account (place "") or one place failed; ``error_kind`` is RemoteError.kind."""
    upsert(
        conn,
        source_states,
        [
            _row(
                kind,
                source,
                place,
                last_error=error,
                last_error_kind=error_kind,
                last_error_at=datetime.now(UTC),
            )
        ],
        ["kind", "source", "place"],
        ["last_error", "last_error_kind", "last_error_at"],
    )


def counted(
    conn: Connection, kind: str, source: str, place: str, *, captured: int = 0, skipped: int = 0
) -> None:
    """Add to a place's running counts, in the transaction of the batch that made them."""
    if not captured and not skipped:
        return
    t = source_states.c
    upsert(
        conn,
        source_states,
        [_row(kind, source, place) | {"captured": captured, "skipped": skipped}],
        ["kind", "source", "place"],
        lambda ex: {"captured": t.captured + ex.captured, "skipped": t.skipped + ex.skipped},
    )


# --- mail: the folder cursor ------------------------------------------------------------------


def get_cursor(conn: Connection, mailbox: str, folder: str) -> Cursor | None:
    row = conn.execute(
        select(
            folder_cursors.c.uidvalidity, folder_cursors.c.last_uid, folder_cursors.c.highestmodseq
        ).where(folder_cursors.c.mailbox == mailbox, folder_cursors.c.folder == folder)
    ).first()
    if row is None:
        return None
    return Cursor(row.uidvalidity, int(row.last_uid or 0), row.highestmodseq)


def cursors_of(conn: Connection, mailboxes: Sequence[str], folder: str) -> dict[str, Cursor]:
    """The cursors of one folder of many mailboxes, in one query a chunk."""
    found: dict[str, Cursor] = {}
    for part in chunks(sorted(set(mailboxes))):
        rows = conn.execute(
            select(
                folder_cursors.c.mailbox,
                folder_cursors.c.uidvalidity,
                folder_cursors.c.last_uid,
                folder_cursors.c.highestmodseq,
            ).where(folder_cursors.c.mailbox.in_(part), folder_cursors.c.folder == folder)
        )
        for row in rows:
            found[str(row.mailbox)] = Cursor(
                row.uidvalidity, int(row.last_uid or 0), row.highestmodseq
            )
    return found


def reset_folder(conn: Connection, mailbox: str, folder: str, uidvalidity: int) -> None:
    """UIDVALIDITY changed: old UIDs mean nothing now.  Records stay; their sources are
    re-attached by Message-ID as the folder is read again."""
    conn.execute(
        delete(provenance).where(
            provenance.c.mailbox == mailbox,
            provenance.c.folder == folder,
            provenance.c.uidvalidity != uidvalidity,
        )
    )
    conn.execute(
        folder_cursors.update()
        .where(folder_cursors.c.mailbox == mailbox, folder_cursors.c.folder == folder)
        .values(uidvalidity=uidvalidity, last_uid=0, highestmodseq=None)
    )


def folder_ok(conn: Connection, mailbox: str, folder: str) -> None:
    succeeded(conn, "mailbox", mailbox, folder)


def folder_failed(
    conn: Connection, mailbox: str, folder: str, error: str, kind: str | None = None
) -> None:
    failed(conn, "mailbox", mailbox, folder, error, kind)


def mailbox_attempt(conn: Connection, mailbox: str) -> None:
    attempted(conn, "mailbox", mailbox)


def mailbox_done(
    conn: Connection,
    mailbox: str,
    *,
    error: str | None,
    kind: str | None,
    folders_ok: Sequence[str] = (),
) -> None:
    """The pass is over: the account's outcome, and the folders it found unchanged."""
    if error is None:
        succeeded(conn, "mailbox", mailbox, ACCOUNT, *folders_ok)
    else:
        failed(conn, "mailbox", mailbox, ACCOUNT, error, kind)
        if folders_ok:
            succeeded(conn, "mailbox", mailbox, *folders_ok)


def quarantine_row(
    kind: str, source: str, place: str, item: str, version: str, reason: str, at: datetime
) -> dict[str, object]:
    return {
        "kind": kind,
        "source": source,
        "place": place,
        "item": item,
        "version": version,
        "reason": reason,
        "created_at": at,
    }


QUARANTINE_KEY = ["kind", "source", "place", "item", "version"]


# --- polls that found nothing new, written for many sources at once ----------------------------


def polls_succeeded(
    conn: Connection, polls: Sequence[tuple[str, str, Sequence[str], datetime]]
) -> None:
    """Polls (kind, source, places, when) that found nothing new: each account's attempt and
    success, and each place's success, in one statement for all of them, compiled once.
    Errors are left as they are: such a poll only follows a clean pass (which cleared
    them), and an error written since is another holder's, newer than what this daemon
    knows."""
    rows: dict[tuple[str, str, str], dict[str, object]] = {}
    for kind, source, where, at in polls:  # the latest of each wins
        rows[(kind, source, ACCOUNT)] = _row(
            kind, source, ACCOUNT, last_attempt_at=at, last_success_at=at
        )
        for place in where:
            # A place's attempt is the account's: NULL here leaves it as it is (``_later``).
            rows[(kind, source, place)] = _row(
                kind, source, place, last_attempt_at=None, last_success_at=at
            )
    upsert_planned(conn, source_states, rows.values(), ["kind", "source", "place"], _poll_times)


def _poll_times(excluded: Any) -> dict[str, Any]:
    return {c: _later(c, excluded) for c in ("last_attempt_at", "last_success_at")}


def _later(column: str, excluded: Any) -> Any:
    """The proposed time, unless the stored one is newer: a holder paused with polls in hand
    must not overwrite what the source's new holder recorded since.  A NULL proposed
    changes nothing (NULL compares as unknown)."""
    t = source_states.c
    return case(
        (or_(t[column].is_(None), t[column] < excluded[column]), excluded[column]),
        else_=t[column],
    )
