"""What the engine needs from a mail or calendar source, and nothing more.

The engine sees only these types; the IMAP and CalDAV specifics (imapclient,
python-caldav, TLS, error mapping) stay in ``imap.py`` and ``dav.py``, and the
fakes in ``tests/fakes.py`` are held to the same contract as the real servers
(``tests/contract/``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

# The folder IMAP IDLE watches (imap_idle.py), named here so that what only compares a
# folder with it does not load the IDLE connector.
INBOX = "INBOX"


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
    selected: bool = False  # by EXAMINE: SEARCH and FETCH may follow; by STATUS: not yet


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

    def status(self, folder: str) -> FolderStatus:
        """The folder's counters in one round trip, selecting it only when it already is."""
        ...

    def uids_from(self, first_uid: int, last_uid: int | None = None) -> list[int]: ...

    def fetch(self, uids: list[int]) -> list[FetchedMessage]: ...

    def fetch_message_ids(self, uids: list[int]) -> dict[int, bytes]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class CalendarInfo:
    url: str
    name: str


@dataclass(frozen=True, slots=True)
class CalendarObject:
    href: str
    etag: str
    data: str


@dataclass(slots=True)
class Changes:
    token: str | None  # the new sync token, None when the server has none
    changed: list[CalendarObject]
    deleted: list[str]  # hrefs
    # "query" (first sync), "query-unfiltered" (first sync, the server failed the time-range
    # filter), "token", "full-token" (no or rejected token) or "etag"
    method: str
    # Objects listed but not downloaded: all their occurrences lie before the window, which
    # only moves forward (href -> ETag).  Remembered, so a change to one still shows.
    unread: dict[str, str] = field(default_factory=dict)
    # Objects not downloaded because they are larger than any calendar object syncd reads
    # (MAX_OBJECT_BYTES), or than the XML parser takes: href -> (ETag, reason).
    oversized: dict[str, tuple[str, str]] = field(default_factory=dict)


class CalendarSession(Protocol):
    """One logged-in account on a calendar server: exactly what the engine calls.

    Failures are raised as ``syncd.errors.RemoteError`` subclasses: a calendar that is
    gone is a ``RemoteConfigError`` (reported, the others continue), a busy or failing
    server a ``TransientError``.
    """

    # Requests made so far: reported per pass, so a quiet calendar shows as one request.
    requests: int

    def discover(self) -> list[CalendarInfo]: ...

    def changes(
        self,
        url: str,
        token: str | None,
        known: dict[str, str],
        *,
        window: tuple[datetime, datetime] | None = None,
    ) -> Changes: ...

    def fetch(self, url: str, hrefs: list[str]) -> list[CalendarObject]: ...

    # --- verify
    def collection_version(self, url: str) -> str | None: ...

    def window_etags(self, url: str, start: datetime, end: datetime) -> dict[str, str]: ...

    def changed_since(self, url: str, token: str) -> set[str] | None: ...

    # --- task lists (VTODO), the one place syncd writes
    def task_list(self, name: str) -> str: ...

    def todo_etags(self, url: str) -> dict[str, str]: ...

    def put(self, url: str, href: str, text: str) -> str: ...

    def delete(self, url: str, href: str) -> None: ...

    def close(self) -> None: ...
