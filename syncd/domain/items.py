"""What a source hands to the store: one captured message, one meeting occurrence.  No I/O.

These are the domain's decisions about an item (its key, direction, status, who takes
part and how they match); the store only writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from syncd.domain.matching import Match

if TYPE_CHECKING:
    # The message parser behind it is the capture's, not the store's: saving a batch, or
    # a pass that finds nothing new, needs none of it.
    from syncd.domain.capture import Participant


def email_key(message_id: str) -> str:
    return f"email:{message_id}"


@dataclass(slots=True)
class CapturedMessage:
    uid: int
    message_id: str
    direction: str
    subject: str
    snippet: str | None
    body: str | None
    occurred_at: datetime
    in_reply_to: str | None
    references: list[str]
    participants: list[tuple[Participant, Match]]
    # Its record's search index entry (terms, and their SQLite packing) when worked out
    # ahead in a backlog's parse worker (engine/imap/parse_worker.py); None: at the save.
    indexed: tuple[str, bytes] | None = None

    @property
    def key(self) -> str:
        return email_key(self.message_id)


@dataclass(slots=True)
class MeetingItem:
    """One occurrence of a meeting as its record shows it."""

    key: str
    uid: str
    recurrence_id: str
    summary: str
    starts_at: datetime
    ends_at: datetime
    status: str
    sequence: int
    organizer: str | None
    direction: str
    fingerprint: str
    participants: list[tuple[Participant, Match]]
