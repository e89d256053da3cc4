"""Sync state per mailbox and folder: cursors, last success, last error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, delete, select

from syncd.schema.tables import folder_states, mailbox_states, sources
from syncd.store.sql import upsert


@dataclass(frozen=True, slots=True)
class Cursor:
    uidvalidity: int | None
    last_uid: int
    highestmodseq: int | None


def get_cursor(conn: Connection, mailbox: str, folder: str) -> Cursor | None:
    row = conn.execute(
        select(
            folder_states.c.uidvalidity, folder_states.c.last_uid, folder_states.c.highestmodseq
        ).where(folder_states.c.mailbox == mailbox, folder_states.c.folder == folder)
    ).first()
    if row is None:
        return None
    return Cursor(row.uidvalidity, int(row.last_uid or 0), row.highestmodseq)


def reset_folder(conn: Connection, mailbox: str, folder: str, uidvalidity: int) -> None:
    """UIDVALIDITY changed: old UIDs mean nothing now.  Records stay; their sources are
    re-attached by Message-ID as the folder is read again."""
    conn.execute(
        delete(sources).where(
            sources.c.mailbox == mailbox,
            sources.c.folder == folder,
            sources.c.uidvalidity != uidvalidity,
        )
    )
    conn.execute(
        folder_states.update()
        .where(folder_states.c.mailbox == mailbox, folder_states.c.folder == folder)
        .values(uidvalidity=uidvalidity, last_uid=0, highestmodseq=None)
    )


def folder_ok(conn: Connection, mailbox: str, folder: str) -> None:
    conn.execute(
        folder_states.update()
        .where(folder_states.c.mailbox == mailbox, folder_states.c.folder == folder)
        .values(last_success_at=datetime.now(UTC), last_error=None, last_error_at=None)
    )


def folder_failed(conn: Connection, mailbox: str, folder: str, error: str) -> None:
    now = datetime.now(UTC)
    upsert(
        conn,
        folder_states,
        [
            {
                "mailbox": mailbox,
                "folder": folder,
                "last_uid": 0,
                "messages_captured": 0,
                "messages_skipped": 0,
                "last_error": error,
                "last_error_at": now,
            }
        ],
        ["mailbox", "folder"],
        ["last_error", "last_error_at"],
    )


def mailbox_attempt(conn: Connection, mailbox: str) -> None:
    upsert(
        conn,
        mailbox_states,
        [{"mailbox": mailbox, "last_attempt_at": datetime.now(UTC)}],
        ["mailbox"],
        ["last_attempt_at"],
    )


def mailbox_done(conn: Connection, mailbox: str, *, error: str | None, kind: str | None) -> None:
    now = datetime.now(UTC)
    values: dict[str, object] = (
        {"last_success_at": now, "last_error": None, "last_error_kind": None, "last_error_at": None}
        if error is None
        else {"last_error": error, "last_error_kind": kind, "last_error_at": now}
    )
    conn.execute(
        mailbox_states.update().where(mailbox_states.c.mailbox == mailbox).values(**values)
    )
