"""What tells an unchanged folder, without the database layer: the folder cursor, the
comparison of a cursor with the server's STATUS, and the login.

Start-up (issue #20): `syncd sync`'s first look (engine/first_look.py) asks these before
SQLAlchemy is imported; the pass (mail_sync.py) and the daemon's polls use the same ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from syncd.config import MailboxConfig
from syncd.connectors.base import FolderStatus, MailSession
from syncd.connectors.imap import ImapSession
from syncd.group_tokens import TokenCaches
from syncd.secrets import read_secret

SessionOpener = Callable[[MailboxConfig, int], MailSession]


@dataclass(frozen=True, slots=True)
class Cursor:
    """A folder's checkpoint (``folder_cursors``): where the next pass picks up."""

    uidvalidity: int | None
    last_uid: int
    highestmodseq: int | None


def open_imap(box: MailboxConfig, max_bytes: int, tokens: TokenCaches | None = None) -> MailSession:
    """A logged-in session; a group member's token comes from ``tokens`` (its owner's)."""
    return ImapSession.open(
        box,
        lambda: read_secret(box, what=f"mailbox {box.name}", tokens=tokens),
        max_bytes=max_bytes,
    )


def imap_opener(tokens: TokenCaches) -> SessionOpener:
    """``open_imap`` with the token caches of the daemon or the command that opens."""
    return lambda box, max_bytes: open_imap(box, max_bytes, tokens)


def unchanged_folders(session: MailSession, folders: list[str], cursors: dict[str, Cursor]) -> bool:
    """Every folder unchanged since its cursor: one STATUS each (EXAMINE for the one the
    session has open), no database.  False at the first one that changed or that has no
    cursor; what the server refuses raises, as in a pass."""
    for folder in folders:
        cursor = cursors.get(folder)
        if cursor is None or not unchanged(cursor, session.status(folder)):
            return False
    return True


def unchanged(cursor: Cursor | None, status: FolderStatus) -> bool:
    """Nothing in the folder to capture since the cursor: same UIDVALIDITY, and no UID
    assigned past the cursor (every new message takes a UID at or above UIDNEXT).

    HIGHESTMODSEQ is not part of it: equal, it confirms the folder is unchanged; moved while
    UIDNEXT did not, only flags changed or messages were expunged, and the full pass would
    capture nothing either (a message read by its owner moves it several times a day).
    """
    return (
        cursor is not None
        and cursor.uidvalidity == status.uidvalidity
        and status.uidnext is not None
        and status.uidnext <= cursor.last_uid + 1
    )
