"""What the engine needs from a mail source, and nothing more.

The engine sees only these types; the IMAP specifics (imapclient, TLS, error
mapping) stay in ``imap.py``, and tests can hold a fake to the same contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class FolderInfo:
    name: str
    flags: frozenset[str]


@dataclass(frozen=True, slots=True)
class FolderStatus:
    name: str
    uidvalidity: int
    uidnext: int | None
    highestmodseq: int | None
    exists: int


@dataclass(frozen=True, slots=True)
class FetchedMessage:
    uid: int
    size: int
    internal_date: datetime | None
    raw: bytes  # the header section, followed by the (possibly truncated) body unless headers_only
    headers_only: bool


class MailSession(Protocol):
    """One logged-in connection to a mailbox, reading without changing anything."""

    def capabilities(self) -> frozenset[str]: ...

    def folders(self) -> list[FolderInfo]: ...

    def default_folders(self) -> list[str]: ...

    def examine(self, folder: str) -> FolderStatus: ...

    def uids_from(self, first_uid: int, last_uid: int | None = None) -> list[int]: ...

    def fetch(self, uids: list[int]) -> list[FetchedMessage]: ...

    def fetch_message_ids(self, uids: list[int]) -> dict[int, bytes]: ...

    def close(self) -> None: ...
