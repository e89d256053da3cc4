"""A source is the unit syncd syncs: a mailbox or a calendar account, behind one interface.

The daemon, `syncd sync` and `syncd check` iterate `Source` objects and never ask which
kind they hold.  A new kind of source (a task list, an API mailbox, an address book) is one
more class here with its engine behind it; what differs between kinds stays a capability
(`watcher()` is None where the server cannot push, `push_tasks()` is None where the source
holds no task list).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Literal, Protocol, TypeVar

from sqlalchemy import Connection, Engine

from syncd.config import CalendarConfig, Config, GroupMemberConfig, MailboxConfig
from syncd.connectors.base import INBOX
from syncd.domain.matching import Directory
from syncd.domain.urls import shown_url
from syncd.engine.imap.mail_sync import MailSync, Progress
from syncd.engine.imap.unchanged import (
    SessionOpener,
    imap_opener,
    open_imap,
    unchanged_folders,
)
from syncd.errors import RemoteError, describe
from syncd.group_tokens import TokenCaches
from syncd.logs import get_logger
from syncd.store import verify as verify_store

if TYPE_CHECKING:
    # Start-up (issue #20): a command imports what it uses.  The calendar stack (caldav,
    # niquests) is imported by a calendar source's first call, verify by a verify, the IDLE
    # hub by the daemon that passes one in.
    from syncd.engine.backlog import Backlog
    from syncd.engine.imap.idle_hub import IdleHub
    from syncd.engine.imap.idle_watch import Watch
    from syncd.engine.imap.sessions import SessionCache
    from syncd.engine.task_sync import TaskLists
    from syncd.engine.verify import SourceReport

log = get_logger("syncd.sources")

Kind = Literal["mailbox", "calendar"]
Fence = Callable[[Connection], None]
# A watch's first login: INBOX's (UIDVALIDITY, UIDNEXT) then.
OnOpen = Callable[[tuple[int | None, int | None]], None]


def _no_fence(_conn: Connection) -> None:
    return None


def _never() -> bool:
    return False


@dataclass(frozen=True, slots=True)
class PlaceCounts:
    """What one pass did in one place of a source: a folder, or a calendar collection."""

    place: str  # folder name, or calendar display name
    captured: int = 0  # records made (messages, meetings)
    updated: int = 0
    cancelled: int = 0
    skipped: int = 0  # by a capture rule
    quarantined: int = 0
    error: str | None = None  # this place failed; the others went on


@dataclass(slots=True)
class SyncReport:
    """One pass over one source, the same shape for every kind."""

    kind: Kind
    source: str
    places: list[PlaceCounts] = field(default_factory=list)
    error: RemoteError | None = None  # the whole source failed (login, network, discovery)
    requests: int = 0  # round trips to the server, where the connector counts them

    @property
    def ok(self) -> bool:
        return self.error is None and all(p.error is None for p in self.places)

    def total(self, what: str) -> int:
        return sum(int(getattr(p, what)) for p in self.places)

    def reason(self) -> str | None:
        """Why the pass was not clean, in one line (the daemon's health reason)."""
        if self.error is not None:
            return describe(self.error)
        failed = [f"{p.place}: {p.error}" for p in self.places if p.error]
        return "; ".join(failed) or None


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of `syncd check` about a source."""

    level: Literal["info", "problem", "note"]
    text: str
    fix: str | None = None


@dataclass(slots=True)
class Repaired:
    """What `syncd sync --repair` did in one place that `syncd verify` found items missing in."""

    source: str
    place: str
    asked: int
    captured: int = 0
    skipped: int = 0
    quarantined: int = 0
    errors: list[str] = field(default_factory=list)


class Source(Protocol):
    kind: Kind
    record_kind: str  # the kind of the records it makes: email | meeting

    @property
    def config(self) -> MailboxConfig | CalendarConfig:
        """Its [[mailbox]] or [[calendar]] table: a changed one restarts the source."""
        ...

    @property
    def name(self) -> str: ...

    def heading(self) -> str:
        """Where the source is and who logs in, for `syncd check` (never a secret)."""
        ...

    def sync(
        self,
        directory: Directory,
        *,
        should_stop: Callable[[], bool] = _never,
        fence: Fence = _no_fence,
        progress: Progress | None = None,
    ) -> SyncReport:
        """One pass: every batch commits with its cursor; ``fence`` runs in each batch's
        transaction (the daemon's lease), ``should_stop`` is asked between batches."""
        ...

    def check(self) -> list[Finding]:
        """Log in and list what would be synced; capture nothing."""
        ...

    def unchanged(self, *, ask: bool = True) -> list[str] | None:
        """The daemon's cheap poll, before the pass: the places found unchanged since the
        last clean pass when nothing at all is new there (no database read or write; the
        kept connection's STATUS), else None and the pass runs.  None also where the source
        cannot tell so cheaply, and on any error (the pass reports it).  With ``ask``
        False, None where telling would take a round trip to the server: the daemon's
        loop answers the rest itself, without a worker."""
        ...

    def verify(
        self, fence: Fence = _no_fence, *, should_stop: Callable[[], bool] = _never
    ) -> SourceReport:
        """Account for every item the server lists (`syncd verify`); ``fence`` runs first
        in each of its transactions, as in ``sync``; ``should_stop`` is asked between
        places and batches (raises VerifyStopped)."""
        ...

    def repair(self, report: SourceReport, directory: Directory) -> list[Repaired]:
        """Fetch what `syncd verify` found missing (``report``), through the normal capture
        path; one ``Repaired`` per place with something missing."""
        ...

    def push_tasks(self, fence: Fence = _no_fence) -> dict[str, int] | None:
        """After the follow-up rules ran: write tasks to the source's task list.  None when
        the source holds no task list; raises RemoteError when the push failed.  ``fence``
        runs first in each of its transactions, as in ``sync``."""
        ...

    @property
    def news_at_login(self) -> bool:
        """Its watch's first login tells whether it has news (``on_open``): a source taken
        over from another daemon need not be polled at once to find out."""
        ...

    def watcher(
        self, hub: IdleHub, on_change: Callable[[str], None], on_open: OnOpen | None = None
    ) -> Watch | None:
        """A watch on ``hub`` that calls ``on_change`` when the server reports new items (and
        ``on_open`` once logged in, with what it found), or None where the server cannot push
        (then the source is polled only)."""
        ...


_Cfg = TypeVar("_Cfg", MailboxConfig, CalendarConfig)


class _Configured(Generic[_Cfg]):
    """What every kind of source holds: its own config section, the whole config, and the
    database (None when it is made only to be checked)."""

    def __init__(self, engine: Engine | None, config: Config, section: _Cfg) -> None:
        self._engine_or_none = engine
        self._config = config
        self.config: _Cfg = section

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def _engine(self) -> Engine:
        assert self._engine_or_none is not None, "made without a database (for check only)"
        return self._engine_or_none


class MailboxSource(_Configured[MailboxConfig]):
    kind: Kind = "mailbox"
    record_kind = "email"

    def __init__(
        self,
        engine: Engine | None,
        config: Config,
        box: MailboxConfig,
        sessions: SessionCache | None = None,
        *,
        opener: SessionOpener = open_imap,
        backlog: Backlog | None = None,
        parse_worker: bool = False,
    ) -> None:
        super().__init__(engine, config, box)
        self._sessions = sessions  # the daemon's kept connections; None: log in each pass
        self._open = opener  # a login of its own (with its owner's token caches)
        self._backlog = backlog  # the daemon's, which its webhook deliverer reads
        self._parse_worker = parse_worker  # a backlog parsed in a forked child (MailSync)

    def heading(self) -> str:
        box = self.config
        via = (
            f", {box.auth}, mailbox group {box.group}" if isinstance(box, GroupMemberConfig) else ""
        )
        return f"{box.name} ({box.security}://{box.host}:{box.port} as {box.username}{via})"

    def sync(
        self,
        directory: Directory,
        *,
        should_stop: Callable[[], bool] = _never,
        fence: Fence = _no_fence,
        progress: Progress | None = None,
    ) -> SyncReport:
        began = time.monotonic()
        result = MailSync(
            self._engine,
            self._config,
            opener=self._sessions.open if self._sessions is not None else self._open,
            progress=progress,
            should_stop=should_stop,
            fence=fence,
            backlog=self._backlog,
            parse_worker=self._parse_worker,
        ).sync_mailbox(self.config, directory)
        if self._sessions is not None:  # for the next poll's STATUS (``unchanged``)
            cursors = {f.folder: f.cursor for f in result.folders if f.cursor is not None}
            clean = result.ok and len(cursors) == len(result.folders)
            self._sessions.remember_cursors(self.name, cursors if clean else None, read_since=began)
        return SyncReport(
            "mailbox",
            self.name,
            [
                PlaceCounts(
                    f.folder,
                    captured=f.captured,
                    skipped=f.skipped,
                    quarantined=f.quarantined,
                    error=f.error,
                )
                for f in result.folders
            ],
            result.error,
        )

    def check(self) -> list[Finding]:
        box = self.config
        try:
            session = self._open(box, self._config.capture.max_message_bytes)
        except RemoteError as err:
            return [Finding("problem", err.message, err.hint)]
        out: list[Finding] = []
        try:
            caps = session.capabilities()
            names = [f.name for f in session.folders()]
            wanted = box.folders or session.default_folders()
            out.append(Finding("info", "login: ok"))
            out += [
                Finding("info", f"{cap}: {'yes' if cap in caps else 'no'}")
                for cap in ("IDLE", "CONDSTORE")
            ]
            out.append(Finding("info", f"folders: {', '.join(names)}"))
            out.append(Finding("info", f"will capture: {', '.join(wanted)}"))
            out += [
                Finding(
                    "problem",
                    f"folder {folder!r} does not exist",
                    f"set folders to names from the list above (found: {', '.join(names)})",
                )
                for folder in wanted
                if folder not in names
            ]
            if not box.folders and len(wanted) == 1:
                out.append(
                    Finding(
                        "note",
                        "no folder is marked \\Sent; add your sent folder to `folders` to "
                        "capture outbound mail",
                    )
                )
        except RemoteError as err:
            out.append(Finding("problem", err.message))
        finally:
            session.close()
        return out

    def unchanged(self, *, ask: bool = True) -> list[str] | None:
        if self._sessions is None:
            return None
        cursors = self._sessions.cursors(self.name)
        if not cursors:
            return None
        # INBOX held in IDLE by the watch since before the last pass read it (and the other
        # folders under the watch's NOTIFY since then): any mail since was reported (and
        # made this poll a full pass), so they need no STATUS.
        covered = self._sessions.covered_folders(self.name)

        def asks(folder: str) -> bool:
            return (INBOX if folder.upper() == INBOX else folder) not in covered

        folders = self.config.folders or self._sessions.default_folders_listed(self.name)
        if folders is not None and covered:
            rest = [f for f in folders if asks(f)]
            if not rest:  # nothing to ask the server: the IDLE stays undisturbed
                if any(f not in cursors for f in folders):
                    return None
                self._sessions.served_by_watch()
                return folders
        if not ask:
            return None
        asking = time.monotonic()
        try:
            session = self._sessions.open(self.config, self._config.capture.max_message_bytes)
        except Exception:  # a login that fails now fails the pass too, which reports it
            return None
        try:
            folders = folders or session.default_folders()
            asked = [f for f in folders if asks(f)]
            if any(f not in cursors for f in folders):
                return None
            if not unchanged_folders(session, asked, cursors):
                return None
            self._sessions.cursors_confirmed(self.name, asking)
            return folders
        except Exception:  # a refused folder, a dropped connection: the pass reports it
            return None
        finally:
            session.close()

    def verify(
        self, fence: Fence = _no_fence, *, should_stop: Callable[[], bool] = _never
    ) -> SourceReport:
        from syncd.engine.verify import Verifier

        return Verifier(
            self._engine, self._config, opener=self._open, fence=fence, should_stop=should_stop
        ).verify_mailbox(self.config)

    def repair(self, report: SourceReport, directory: Directory) -> list[Repaired]:
        """The missing UIDs read, decided and saved as a pass would (the cursor never moves
        backwards)."""
        places = [p for p in report.places if p.missing]
        done = [Repaired(self.name, p.place, len(p.missing)) for p in places]
        mail = MailSync(self._engine, self._config, opener=self._open, backlog=self._backlog)
        try:
            session = self._open(self.config, self._config.capture.max_message_bytes)
            try:
                for place, item in zip(places, done, strict=True):
                    assert place.uidvalidity is not None
                    result = mail.repair_folder(
                        session,
                        self.config,
                        place.place,
                        place.uidvalidity,
                        [int(u) for u in place.missing],
                        directory,
                    )
                    item.captured, item.skipped = result.captured, result.skipped
                    item.quarantined = result.quarantined
            finally:
                session.close()
        except RemoteError as err:
            for item in done:
                item.errors.append(err.message)
        return done

    def push_tasks(self, fence: Fence = _no_fence) -> dict[str, int] | None:
        return None

    @property
    def news_at_login(self) -> bool:
        """A mailbox whose folders include INBOX, the folder a watch sees."""
        folders = self.config.folders
        return folders is None or any(folder.upper() == INBOX for folder in folders)

    def watcher(
        self, hub: IdleHub, on_change: Callable[[str], None], on_open: OnOpen | None = None
    ) -> Watch | None:
        return hub.watch(self.config, on_change, on_open) if self._config.sync.idle else None


class CalendarSource(_Configured[CalendarConfig]):
    kind: Kind = "calendar"
    record_kind = "meeting"

    def __init__(
        self,
        engine: Engine | None,
        config: Config,
        calendar: CalendarConfig,
        task_lists: TaskLists | None = None,
    ) -> None:
        super().__init__(engine, config, calendar)
        self._task_lists = task_lists  # where its task list is, remembered by a daemon

    def heading(self) -> str:
        return f"{self.config.name} ({shown_url(self.config.url)} as {self.config.username})"

    def sync(
        self,
        directory: Directory,
        *,
        should_stop: Callable[[], bool] = _never,
        fence: Fence = _no_fence,
        progress: Progress | None = None,
    ) -> SyncReport:
        from syncd.engine.calendar_sync import CalendarSync

        # A calendar pass is one REPORT per collection: nothing to stop between, no progress.
        result = CalendarSync(self._engine, self._config, fence=fence).sync_source(
            self.config, directory
        )
        places = [
            PlaceCounts(
                name,
                captured=counts.get("created", 0),
                updated=counts.get("updated", 0),
                cancelled=counts.get("cancelled", 0),
                quarantined=counts.get("quarantined", 0),
            )
            for name, counts in result.calendars.items()
        ]
        places += [PlaceCounts(name, error=error) for name, error in result.errors.items() if name]
        return SyncReport("calendar", self.name, places, result.error, result.requests)

    def check(self) -> list[Finding]:
        from syncd.engine.calendar_sync import open_caldav

        try:
            with open_caldav(self.config) as dav:
                found = dav.discover()
        except RemoteError as err:
            return [Finding("problem", err.message, err.hint)]
        return [
            Finding("info", "login: ok"),
            Finding("info", f"calendars: {', '.join(c.name for c in found) or 'none'}"),
        ]

    def unchanged(self, *, ask: bool = True) -> list[str] | None:
        return None  # a calendar pass is one REPORT per collection: nothing cheaper to ask

    def verify(
        self, fence: Fence = _no_fence, *, should_stop: Callable[[], bool] = _never
    ) -> SourceReport:
        from syncd.engine.verify import Verifier

        return Verifier(
            self._engine, self._config, fence=fence, should_stop=should_stop
        ).verify_calendar(self.config)

    def repair(self, report: SourceReport, directory: Directory) -> list[Repaired]:
        """The calendar's sync token forgotten, so that a pass lists every ETag and reads
        each object it does not know: the one path that captures events."""
        from syncd.engine.calendar_sync import CalendarSync

        places = [p for p in report.places if p.missing]
        with self._engine.begin() as conn:
            for place in places:
                assert place.url is not None
                verify_store.forget_sync_token(conn, self.name, place.url)
        synced = CalendarSync(self._engine, self._config).run_once([self.name])[0]
        out = []
        for place in places:
            counts = synced.calendars.get(place.place, {})
            item = Repaired(self.name, place.place, len(place.missing))
            item.captured = counts.get("created", 0) + counts.get("updated", 0)
            item.quarantined = counts.get("quarantined", 0)
            item.errors += list(synced.errors.values())
            out.append(item)
        return out

    def push_tasks(self, fence: Fence = _no_fence) -> dict[str, int] | None:
        if not self.config.tasks_calendar:
            return None
        from syncd.engine.calendar_sync import open_caldav
        from syncd.engine.task_sync import sync_task_list

        with open_caldav(self.config) as session:
            return sync_task_list(self._engine, self.config, session, self._task_lists, fence=fence)

    @property
    def news_at_login(self) -> bool:
        return False  # no watch

    def watcher(
        self, hub: IdleHub, on_change: Callable[[str], None], on_open: OnOpen | None = None
    ) -> Watch | None:
        return None  # CalDAV has no push that syncd uses: calendars are polled


def configured_sources(
    engine: Engine | None,
    config: Config,
    mailboxes: list[str] | None = None,
    calendars: list[str] | None = None,
    *,
    task_lists: TaskLists | None = None,
    sessions: SessionCache | None = None,
    tokens: TokenCaches | None = None,
    backlog: Backlog | None = None,
    parse_worker: bool = False,
    opener: SessionOpener | None = None,
) -> list[Source]:
    """Every configured source, mailboxes first, optionally only the named ones (None: all
    of that kind).  Without an engine, sources can only be checked.  ``task_lists`` keeps
    task-list URLs between passes (the daemon's); without it each push looks the list up.
    ``sessions`` keeps IMAP connections between passes (the daemon's); ``tokens`` are the
    caller's mailbox-group token caches (without them, these sources share new ones);
    ``backlog`` is the daemon's (engine/backlog.py); ``parse_worker``: a mailbox's backlog
    is parsed in a forked child (engine/imap/parse_worker.py), for a single-threaded caller;
    ``opener`` replaces the mailboxes' login (`syncd sync`'s, after its first look)."""
    if opener is None:
        opener = imap_opener(tokens if tokens is not None else TokenCaches())
    out: list[Source] = [
        MailboxSource(
            engine, config, box, sessions, opener=opener, backlog=backlog, parse_worker=parse_worker
        )
        for box in config.mailbox
        if mailboxes is None or box.name in mailboxes
    ]
    out += [
        CalendarSource(engine, config, cal, task_lists)
        for cal in config.calendar
        if calendars is None or cal.name in calendars
    ]
    return out
