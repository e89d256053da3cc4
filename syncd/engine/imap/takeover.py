"""Mailboxes taken over from another daemon: which have news, by what their watch's first
login found in INBOX, against the stored cursor (one query for all of them).

A daemon that takes over a thousand mailboxes then polls the hundred with mail first, not
all thousand in any order; the others wait for their turn within the interval, the watch
covering INBOX meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Engine

from syncd.connectors.imap_idle import FOLDER as INBOX
from syncd.logs import get_logger
from syncd.store.state import Cursor, cursors_of

log = get_logger("syncd.fleet")

Key = tuple[str, str]  # (kind, name)
Opened = tuple[int | None, int | None]  # INBOX's (UIDVALIDITY, UIDNEXT) at the login


def with_news(engine: Engine, opened: Mapping[Key, Opened]) -> set[Key]:
    """Those of ``opened`` whose INBOX holds mail past the cursor (all of them when the
    cursors cannot be read: the database may be down, and a poll finds out)."""
    try:
        with engine.connect() as conn:
            cursors: dict[str, Cursor] = cursors_of(conn, [name for _kind, name in opened], INBOX)
    except Exception as err:
        log.warning("fleet.cursors_unread", error=type(err).__name__)
        return set(opened)
    news = set()
    for key, (validity, uidnext) in opened.items():
        cursor = cursors.get(key[1])
        if (
            cursor is None
            or validity is None
            or uidnext is None
            or cursor.uidvalidity != validity
            or uidnext > cursor.last_uid + 1
        ):
            news.add(key)
    return news
