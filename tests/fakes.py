"""In-memory servers behind the connector interfaces (connectors/base.py).

A fake is worth having only if it behaves like the real server where the engine can tell:
``tests/contract/`` runs the same assertions on these and on Dovecot and Radicale.  What
they model, and why:

- mail: folders with UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and EXISTS; UIDs ascending with
  gaps (EXPUNGE leaves holes, UIDNEXT never goes back); a rebuilt folder (new UIDVALIDITY,
  messages renumbered from 1); the fetch of the first ``PREFIX_BYTES`` with the header only
  for messages over the size limit; a dropped connection (every later call fails too).
- calendars: ETags that change with the data, RFC 6578 sync tokens (an unknown token falls
  back to a full listing), deletions reported once, the time-range query of a first sync,
  multiget that skips what is gone, objects over the size limit listed but not downloaded,
  a calendar that is gone (404).

Errors on demand: ``fail_next(operation, error)`` raises ``error`` on the next call of that
operation, from any session, as the connector would have classified the server's failure.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from syncd.config import CalendarConfig, MailboxConfig
from syncd.connectors.base import (
    CalendarInfo,
    CalendarObject,
    Changes,
    FetchedMessage,
    FolderInfo,
    FolderStatus,
)
from syncd.connectors.imap import PREFIX_BYTES
from syncd.domain.calendar_limits import MAX_OBJECT_BYTES
from syncd.domain.limits import MAX_HEADER_BYTES
from syncd.domain.meetings import BrokenCalendar, read_object
from syncd.errors import RemoteConfigError, RemoteError, TransientError

_DATE_FIELD = re.compile(rb"(?im)^date[ \t]*:")
_MESSAGE_ID = re.compile(rb"(?im)^message-id[ \t]*:.*(?:\r?\n[ \t].*)*")


class _Faults:
    """Errors queued per operation name, raised by a later call of that operation."""

    def __init__(self) -> None:
        self._queued: dict[str, list[tuple[int, RemoteError]]] = {}

    def fail_next(self, operation: str, error: RemoteError, *, after: int = 0) -> None:
        """Raise ``error`` from the call of ``operation`` that follows ``after`` good ones."""
        self._queued.setdefault(operation, []).append((after, error))

    def check(self, operation: str) -> None:
        queued = self._queued.get(operation)
        if not queued:
            return
        after, error = queued[0]
        if after > 0:
            queued[0] = (after - 1, error)
            return
        queued.pop(0)
        raise error


# --- mail ---------------------------------------------------------------------------------------


@dataclass
class _Message:
    raw: bytes
    internal_date: datetime


@dataclass
class _Folder:
    uidvalidity: int
    flags: frozenset[str] = frozenset()
    uidnext: int = 1
    modseq: int = 1
    messages: dict[int, _Message] = field(default_factory=dict)


class FakeMailServer(_Faults):
    """One mailbox: INBOX and Sent (``\\Sent``), like the suite's Dovecot."""

    def __init__(self) -> None:
        super().__init__()
        self._validity = itertools.count(1_700_000_000)
        self.folders: dict[str, _Folder] = {}
        self.make_folder("INBOX")
        self.make_folder("Sent", flags=frozenset({"\\Sent"}))
        self.logins = 0

    # --- what happens on the server -------------------------------------------------------------

    def make_folder(self, name: str, *, flags: frozenset[str] = frozenset()) -> None:
        self.folders.setdefault(name, _Folder(next(self._validity), flags))

    def remove_folder(self, name: str) -> None:
        del self.folders[name]

    def deliver(self, raw: bytes, folder: str = "INBOX") -> int:
        self.make_folder(folder)
        box = self.folders[folder]
        uid = box.uidnext
        box.messages[uid] = _Message(raw, datetime.now(UTC).replace(microsecond=0))
        box.uidnext += 1
        box.modseq += 1
        return uid

    def expunge(self, folder: str, uid: int) -> None:
        box = self.folders[folder]
        del box.messages[uid]
        box.modseq += 1

    def reset_uidvalidity(self, folder: str = "INBOX") -> None:
        """A rebuilt folder: a new UIDVALIDITY and the messages numbered again from 1."""
        box = self.folders[folder]
        kept = [box.messages[uid] for uid in sorted(box.messages)]
        box.uidvalidity = next(self._validity)
        box.messages = dict(enumerate(kept, start=1))
        box.uidnext = len(kept) + 1
        box.modseq += 1

    def session(
        self, box: MailboxConfig | None = None, max_bytes: int = 10_000_000
    ) -> FakeMailSession:
        """A logged-in session; the signature of the engine's ``opener``."""
        self.check("login")
        self.logins += 1
        return FakeMailSession(self, box.name if box else "fake", max_bytes)


class FakeMailSession:
    """The MailSession the engine sees, over a FakeMailServer."""

    def __init__(self, server: FakeMailServer, name: str, max_bytes: int) -> None:
        self._server = server
        self._name = name
        self._max_bytes = max_bytes
        self._folder: str | None = None
        self._lost: TransientError | None = None
        self.closed = False

    def _call(self, operation: str) -> None:
        if self._lost is not None:  # a dropped connection stays dropped, as a socket does
            raise self._lost
        try:
            self._server.check(operation)
        except TransientError as err:
            self._lost = err
            raise

    def _where(self, folder: str | None = None) -> str:
        return f"mailbox {self._name}" + (f" folder {folder}" if folder else "")

    def _open(self) -> _Folder:
        assert self._folder is not None, "no folder examined"
        box = self._server.folders.get(self._folder)
        if box is None:  # deleted while open: this session cannot go on (never asserted)
            raise TransientError(f"{self._where(self._folder)}: connection lost (abort)")
        return box

    def capabilities(self) -> frozenset[str]:
        self._call("capabilities")
        return frozenset({"IMAP4REV1", "IDLE", "CONDSTORE", "ENABLE", "UIDPLUS"})

    def folders(self) -> list[FolderInfo]:
        self._call("folders")
        return [FolderInfo(name, box.flags) for name, box in self._server.folders.items()]

    def default_folders(self) -> list[str]:
        return ["INBOX"] + [
            i.name for i in self.folders() if "\\Sent" in i.flags and i.name != "INBOX"
        ]

    def examine(self, folder: str) -> FolderStatus:
        self._call("examine")
        box = self._server.folders.get(folder)
        if box is None:
            raise RemoteConfigError(
                f"{self._where(folder)}: cannot open the folder (Mailbox doesn't exist: {folder})",
                hint="check the folder name; `syncd check` lists the folders of each mailbox",
            )
        self._folder = folder
        return FolderStatus(folder, box.uidvalidity, box.uidnext, box.modseq, len(box.messages))

    def status(self, folder: str) -> FolderStatus:
        self._call("status")
        box = self._server.folders.get(folder)
        if box is None:
            raise RemoteConfigError(
                f"{self._where(folder)}: cannot open the folder (Mailbox doesn't exist: {folder})",
                hint="check the folder name; `syncd check` lists the folders of each mailbox",
            )
        return FolderStatus(folder, box.uidvalidity, box.uidnext, box.modseq, len(box.messages))

    def uids_from(self, first_uid: int, last_uid: int | None = None) -> list[int]:
        self._call("uids_from")
        return sorted(
            uid
            for uid in self._open().messages
            if uid >= first_uid and (last_uid is None or uid <= last_uid)
        )

    def fetch(self, uids: list[int]) -> list[FetchedMessage]:
        self._call("fetch")
        box = self._open()
        out = []
        for uid in uids:
            message = box.messages.get(uid)
            if message is None:
                continue  # expunged between SEARCH and FETCH
            out.append(self._fetched(uid, message))
        return out

    def _fetched(self, uid: int, message: _Message) -> FetchedMessage:
        raw, size = message.raw[:PREFIX_BYTES], len(message.raw)
        end = _header_end(raw)
        headers_only = size > self._max_bytes
        if end < 0 and size > len(raw):  # a header longer than the prefix: fetched alone
            whole = _header_end(message.raw)
            raw = message.raw[: whole if whole >= 0 else size][:MAX_HEADER_BYTES]
            end, headers_only = len(raw), True
        elif headers_only and end >= 0:
            raw = raw[:end]
        dated = _DATE_FIELD.search(raw, 0, end if end >= 0 else len(raw))
        return FetchedMessage(
            uid, size, None if dated else message.internal_date, raw, headers_only
        )

    def fetch_message_ids(self, uids: list[int]) -> dict[int, bytes]:
        self._call("fetch_message_ids")
        box = self._open()
        out = {}
        for uid in uids:
            if uid in box.messages:
                raw = box.messages[uid].raw
                end = _header_end(raw)
                found = _MESSAGE_ID.search(raw, 0, end if end >= 0 else len(raw))
                out[uid] = (found.group(0) + b"\r\n" if found else b"") + b"\r\n"
        return out

    def close(self) -> None:
        self.closed = True


def _header_end(raw: bytes) -> int:
    at = raw.find(b"\r\n\r\n")
    if at >= 0:
        return at + 4
    at = raw.find(b"\n\n")
    return at + 2 if at >= 0 else -1


# --- calendars ----------------------------------------------------------------------------------


@dataclass
class _Calendar:
    name: str
    objects: dict[str, tuple[str, str]] = field(default_factory=dict)  # href -> (ETag, data)
    # (change number, href) of every write and delete: what a sync token is a position in.
    history: list[tuple[int, str]] = field(default_factory=list)


class FakeCalendarServer(_Faults):
    """One account's calendars, addressed like Radicale's: ``{base}{user}/{slug}/``."""

    def __init__(self, base: str = "http://fake.invalid/", user: str = "alice") -> None:
        super().__init__()
        self.base = base
        self.user = user
        self.calendars: dict[str, _Calendar] = {}
        self._changes = itertools.count(1)
        self._etags = itertools.count(1)

    def url(self, slug: str) -> str:
        return f"{self.base}{self.user}/{slug}/"

    def make_calendar(self, slug: str, display_name: str) -> str:
        self.calendars.setdefault(self.url(slug), _Calendar(display_name))
        return self.url(slug)

    def remove_calendar(self, slug: str) -> None:
        del self.calendars[self.url(slug)]

    def put(self, slug: str, name: str, text: str) -> str:
        calendar, href = self.calendars[self.url(slug)], f"/{self.user}/{slug}/{name}"
        etag = f'"{next(self._etags)}"'
        calendar.objects[href] = (etag, text)
        calendar.history.append((next(self._changes), href))
        return etag

    def delete(self, slug: str, name: str) -> None:
        calendar, href = self.calendars[self.url(slug)], f"/{self.user}/{slug}/{name}"
        del calendar.objects[href]
        calendar.history.append((next(self._changes), href))

    def session(self, config: CalendarConfig | None = None) -> FakeCalendarSession:
        """A logged-in session; the signature of the engine's ``opener``."""
        self.check("login")
        return FakeCalendarSession(self, config.name if config else "fake")


class FakeCalendarSession:
    """The CalendarSession the engine sees, over a FakeCalendarServer."""

    def __init__(self, server: FakeCalendarServer, name: str) -> None:
        self._server = server
        self._where = f"calendar {name}"
        self.requests = 0
        self.closed = False

    def _call(self, operation: str, url: str | None = None) -> _Calendar:
        self.requests += 1
        self._server.check(operation)
        if url is None:
            return _Calendar("")
        calendar = self._server.calendars.get(url)
        if calendar is None:
            raise RemoteConfigError(
                f"{self._where}: not found", hint="check url; `syncd check` lists the calendars"
            )
        return calendar

    def _all_history(self) -> list[tuple[int, str]]:
        return [h for c in self._server.calendars.values() for h in c.history]

    def discover(self) -> list[CalendarInfo]:
        self._call("discover")
        return [CalendarInfo(url, c.name) for url, c in sorted(self._server.calendars.items())]

    def changes(
        self,
        url: str,
        token: str | None,
        known: dict[str, str],
        *,
        window: tuple[datetime, datetime] | None = None,
    ) -> Changes:
        calendar = self._call("changes", url)
        position = _position(token)
        stamp = max((n for n, _ in self._all_history()), default=0)
        new_token = f"http://fake.invalid/sync/{stamp}"
        if token and position is not None and position <= stamp:
            touched = {href for n, href in calendar.history if n > position}
            changed = [
                CalendarObject(h, *calendar.objects[h])
                for h in sorted(touched)
                if h in calendar.objects and known.get(h) != calendar.objects[h][0]
            ]
            deleted = sorted(h for h in touched if h not in calendar.objects)
            return Changes(new_token, changed, deleted, "token")
        if not known and not token:  # the first sync: the events in the window, with data
            margin = timedelta(days=1)
            start, end = (window[0] - margin, window[1] + margin) if window else (None, None)
            found = [
                CalendarObject(h, etag, data)
                for h, (etag, data) in sorted(calendar.objects.items())
                if _reaches(data, start, end)
            ]
            return Changes(None, found, [], "query")
        # A full listing (no token, or one the server no longer knows): ETags, then what changed.
        since = window[0] - timedelta(days=1) if window else None
        changed, unread, oversized = [], {}, {}
        for href, (etag, data) in sorted(calendar.objects.items()):
            if known.get(href) == etag:
                continue
            if len(data.encode()) > MAX_OBJECT_BYTES:
                size = len(data.encode())
                oversized[href] = (
                    etag,
                    f"calendar-data of {size:,} bytes is over the limit of {MAX_OBJECT_BYTES:,}",
                )
            elif href not in known and since is not None and not _reaches(data, since, None):
                unread[href] = etag
            else:
                changed.append(CalendarObject(href, etag, data))
        deleted = sorted(set(known) - set(calendar.objects))
        return Changes(new_token, changed, deleted, "full-token", unread, oversized)

    def fetch(self, url: str, hrefs: list[str]) -> list[CalendarObject]:
        calendar = self._call("fetch", url)
        return [
            CalendarObject(h, *calendar.objects[h]) for h in sorted(hrefs) if h in calendar.objects
        ]

    def collection_version(self, url: str) -> str | None:
        calendar = self._call("collection_version", url)
        return f"http://fake.invalid/sync/{max((n for n, _ in calendar.history), default=0)}|"

    def window_etags(self, url: str, start: datetime, end: datetime) -> dict[str, str]:
        calendar = self._call("window_etags", url)
        return {h: e for h, (e, data) in calendar.objects.items() if _reaches(data, start, end)}

    def changed_since(self, url: str, token: str) -> set[str] | None:
        calendar = self._call("changed_since", url)
        position = _position(token)
        if position is None:
            return None
        return {h for n, h in calendar.history if n > position and h in calendar.objects}

    def task_list(self, name: str) -> str:
        self._call("task_list")
        for url, calendar in self._server.calendars.items():
            if calendar.name == name:
                return url
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "tasks"
        return self._server.make_calendar(slug, name)

    def todo_etags(self, url: str) -> dict[str, str]:
        calendar = self._call("todo_etags", url)
        return {h: e for h, (e, data) in calendar.objects.items() if "BEGIN:VTODO" in data}

    def put(self, url: str, href: str, text: str) -> str:
        self._call("put", url)
        slug = url.rstrip("/").rsplit("/", 1)[-1]
        return self._server.put(slug, href.rsplit("/", 1)[-1], text)

    def delete(self, url: str, href: str) -> None:
        calendar = self._call("delete", url)
        if href in calendar.objects:  # a VTODO the rep already deleted answers 404: fine
            slug = url.rstrip("/").rsplit("/", 1)[-1]
            self._server.delete(slug, href.rsplit("/", 1)[-1])

    def close(self) -> None:
        self.closed = True


def _position(token: str | None) -> int | None:
    """Where a token of ours stands in the history; None for a token we never issued."""
    if not token or not token.startswith("http://fake.invalid/sync/"):
        return None
    tail = token.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


_EPOCH = datetime(1900, 1, 1, tzinfo=UTC)


def _reaches(data: str, start: datetime | None, end: datetime | None) -> bool:
    """Has the object an occurrence in [start, end) (either end open)?  A server's
    time-range filter (RFC 4791 9.9).  One syncd cannot read is included: the server
    read it, and the caller will quarantine it."""
    if start is None and end is None:
        return True
    low = start or _EPOCH
    try:
        view = read_object(data, window_start=low, window_end=end or low + timedelta(days=1))
    except BrokenCalendar:
        return True
    return bool(view.occurrences) or (end is None and view.next_start is not None)
