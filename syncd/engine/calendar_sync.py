"""A sync pass over calendars: changed calendar objects -> meeting records, per calendar.

Each calendar's changes commit in one transaction with its new sync token, so a crash
repeats the sync and nothing is lost or doubled.  A broken object is quarantined and
never stops its calendar; a failing calendar or account never stops the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine

from syncd.config import CalendarConfig, Config
from syncd.connectors.base import CalendarInfo, CalendarObject, CalendarSession
from syncd.connectors.dav import CalDavSession
from syncd.domain.addresses import is_internal, match_key
from syncd.domain.bounds import bound_reason, bound_text, loggable
from syncd.domain.capture import Participant
from syncd.domain.items import MeetingItem
from syncd.domain.matching import Directory, Match, match_address, only_excluded
from syncd.domain.meetings import BrokenCalendar, Occurrence, meeting_status, read_object
from syncd.domain.privacy import Redactor
from syncd.errors import RemoteConfigError, RemoteError, describe
from syncd.logs import get_logger
from syncd.secrets import read_secret
from syncd.store import meetings as store
from syncd.store.directory import load_directory

# The widths of calendar_quarantine/calendar_objects' href and etag columns (schema/tables.py).
HREF_CHARS, ETAG_CHARS = 2000, 300
log = get_logger("syncd.calendar")
# Calendars are listed again (PROPFIND) at most this often; in between, one REPORT per calendar.
REDISCOVER_AFTER = timedelta(hours=1)


@dataclass(slots=True)
class CalendarResult:
    source: str
    calendars: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # calendar display name (or "") -> error
    requests: int = 0
    error: RemoteError | None = None  # what failed the whole account, if anything

    @property
    def ok(self) -> bool:
        return not self.errors


def open_caldav(config: CalendarConfig) -> CalDavSession:
    return CalDavSession(config, lambda: read_secret(config, what=f"calendar {config.name}"))


class CalendarSync:
    def __init__(
        self,
        engine: Engine,
        config: Config,
        *,
        opener: Callable[[CalendarConfig], CalendarSession] = open_caldav,
        now: Callable[[], datetime] | None = None,
        fence: Callable[[Connection], None] = lambda _conn: None,
    ) -> None:
        self._engine = engine
        # Called inside each batch's transaction: the daemon renews its lease there and
        # raises (rolling the batch back) when another daemon took the source over.
        self._fence = fence
        self._config = config
        self._opener = opener
        self._now = now or (lambda: datetime.now(UTC))
        self._people_cache: dict[tuple[object, ...], _People | None] = {}

    def run_once(self, names: list[str] | None = None) -> list[CalendarResult]:
        self._people_cache.clear()  # the directory may have changed since the last pass
        with self._engine.connect() as conn:
            directory = load_directory(conn, self._config.capture)
        sources = [c for c in self._config.calendar if names is None or c.name in names]
        return [self.sync_source(source, directory) for source in sources]

    def sync_source(self, source: CalendarConfig, directory: Directory) -> CalendarResult:
        result = CalendarResult(source.name)
        try:
            session = self._opener(source)
        except RemoteError as err:
            return self._account_failed(result, err)
        try:
            calendars = self._calendars(session, source)
            with self._engine.begin() as conn:
                self._fence(conn)
                store.calendar_ok(conn, source.name)
            for calendar in calendars:
                try:
                    result.calendars[calendar.name] = self._sync_calendar(
                        session, source, calendar, directory
                    )
                except RemoteConfigError as err:
                    result.errors[calendar.name] = describe(err)
                    with self._engine.begin() as conn:
                        self._fence(conn)  # failures too: see MailSync.sync_mailbox
                        store.calendar_failed(
                            conn, source.name, calendar.url, describe(err), err.kind
                        )
        except RemoteError as err:
            self._account_failed(result, err)
        finally:
            result.requests = session.requests
            session.close()
        return result

    def _account_failed(self, result: CalendarResult, err: RemoteError) -> CalendarResult:
        result.error = err
        result.errors[""] = describe(err)
        with self._engine.begin() as conn:
            self._fence(conn)
            store.calendar_failed(conn, result.source, "", describe(err), err.kind)
        log.error("calendar.failed", calendar=result.source, kind=err.kind, error=str(err))
        return result

    def _calendars(self, session: CalendarSession, source: CalendarConfig) -> list[CalendarInfo]:
        """Discovered calendars, from the database while the last discovery is recent."""
        with self._engine.connect() as conn:
            stored = store.stored_calendars(conn, source.name)
        now = self._now()
        fresh = [
            s
            for s in stored
            if s["discovered_at"] and now - _aware(s["discovered_at"]) < REDISCOVER_AFTER
        ]
        if fresh and len(fresh) == len(stored):
            found = [CalendarInfo(s["url"], s["display_name"]) for s in fresh]
            wanted = source.calendars
            return [c for c in found if not wanted or c.name in wanted]
        found = session.discover()
        with self._engine.begin() as conn:
            self._fence(conn)
            store.remember_calendars(conn, source.name, [(c.url, c.name) for c in found])
        return found

    def _sync_calendar(
        self,
        session: CalendarSession,
        source: CalendarConfig,
        calendar: CalendarInfo,
        directory: Directory,
    ) -> dict[str, int]:
        with self._engine.connect() as conn:
            known = store.known_etags(conn, source.name, calendar.url)
            token = next(
                (
                    s["sync_token"]
                    for s in store.stored_calendars(conn, source.name)
                    if s["url"] == calendar.url
                ),
                None,
            )
        now = self._now()
        capture = self._config.capture
        window = (
            now - timedelta(days=capture.past_days),
            now + timedelta(days=capture.future_days),
        )
        changes = session.changes(calendar.url, token, known, window=window)
        batch = store.CalendarBatch(
            calendar=source.name,
            url=calendar.url,
            token=changes.token,
            window_start=window[0],
            window_end=window[1],
            deleted=changes.deleted,
            unread=changes.unread,
            plus_addressing=capture.plus_addressing,
        )
        # Unchanged objects the moving window has reached: a series' next occurrences, a
        # meeting booked months ahead.  Read again, in one multiget, only when there are any.
        with self._engine.connect() as conn:
            due = store.due_again(conn, source.name, calendar.url, batch.window_end)
        for href, (etag, reason) in changes.oversized.items():  # never downloaded
            if not _storable(href, etag, source.name):
                continue
            batch.broken[href] = (etag, bound_reason(reason))
            log.warning(
                "calendar.quarantined",
                calendar=source.name,
                href=loggable(href),
                reason=loggable(reason, 500),
            )
        changed_hrefs = {o.href for o in changes.changed}
        again = sorted(h for h in due if h not in changed_hrefs and h not in changes.deleted)
        objects = changes.changed + (session.fetch(calendar.url, again) if again else [])
        zone = ZoneInfo(self._config.organization.timezone)
        for obj in objects:
            self._read(obj, batch, source, directory, zone)
        counts = store.save_isolating(self._engine, batch, fence=self._fence)
        if batch.capped:  # only then: an unchanged calendar's counts stay all zero
            counts["capped"] = len(batch.capped)
        # An unchanged calendar every minute is not news: only changes are logged at info.
        (log.info if any(counts.values()) else log.debug)(
            "calendar.synced",
            calendar=source.name,
            collection=calendar.name,
            method=changes.method,
            **counts,
        )
        return counts

    def _read(
        self,
        obj: CalendarObject,
        batch: store.CalendarBatch,
        source: CalendarConfig,
        directory: Directory,
        zone: ZoneInfo,
    ) -> None:
        """One object into the batch: its meetings, or its quarantine entry.  Whatever fails
        while reading it (a value no reader accepts, a limit it breaks) stays with it; a
        failure of ours after that (building the meetings) is a bug, raised as one."""
        if not _storable(obj.href, obj.etag, source.name):
            return
        try:
            view = read_object(
                obj.data,
                window_start=batch.window_start,
                window_end=batch.window_end,
                zone=zone,
            )
        except Exception as err:
            # The reason may quote the hostile value (a NUL in DURATION): cleaned like mail's.
            reason = bound_reason(
                str(err)
                if isinstance(err, BrokenCalendar)
                else f"cannot read: {type(err).__name__}: {err}"[:300]
            )
            batch.broken[obj.href] = (obj.etag, reason)
            log.warning(
                "calendar.quarantined",
                calendar=source.name,
                href=loggable(obj.href),
                reason=loggable(reason, 500),
            )
            return
        items = [i for o in view.occurrences if (i := self._item(o, source, directory))]
        batch.next_starts[obj.href] = view.next_start
        batch.objects[obj.href] = (obj.etag, items)
        if view.cut:
            batch.capped[obj.href] = view.cut.reason()
            log.warning(
                "calendar.capped", calendar=source.name, href=obj.href, reason=view.cut.reason()
            )

    def _people(
        self, occurrence: Occurrence, source: CalendarConfig, directory: Directory
    ) -> _People | None:
        """Who takes part and how they match, per distinct organizer and attendee list:
        every occurrence of a series shares one answer.  None for a meeting that is not
        customer history (internal only, or only excluded parties)."""
        key = (occurrence.organizer, occurrence.attendees, source.owner)
        if key in self._people_cache:
            return self._people_cache[key]
        internal = self._config.internal_domains
        people: dict[str, Participant] = {}
        for person in ([occurrence.organizer] if occurrence.organizer else []) + list(
            occurrence.attendees
        ):
            external = person.address != source.owner and not is_internal(person.address, internal)
            people.setdefault(
                person.address, Participant(person.address, person.name, "attendee", external)
            )
        people.setdefault(source.owner, Participant(source.owner, "", "attendee", False))
        externals = frozenset(a for a, p in people.items() if p.external)
        found: _People | None = None
        if externals:
            matched = [
                (p, match_address(p.address, directory, external=p.external))
                for p in people.values()
            ]
            if not only_excluded(matched):
                found = _People(externals, matched)
        self._people_cache[key] = found
        return found

    def _item(
        self, occurrence: Occurrence, source: CalendarConfig, directory: Directory
    ) -> MeetingItem | None:
        people = self._people(occurrence, source, directory)
        if people is None:
            return None
        organizer = occurrence.organizer.address if occurrence.organizer else None
        forgotten = (
            bool(organizer) and match_address(organizer or "", directory).reason == "suppressed"
        )
        # A forgotten organizer still owns their meetings (store.meetings._claim_keys), under
        # the keyed label forget wrote in place of the address: never the address itself.
        stored = (
            directory.suppressions.label(match_key(organizer or "", directory.plus_addressing))
            if forgotten
            else organizer
        )
        return MeetingItem(
            key=occurrence.key,
            uid=occurrence.uid,
            recurrence_id=occurrence.recurrence_id,
            # A forgotten attendee or organizer is not named in the summary either.
            summary=Redactor.of_suppressed(people.matched).redact(occurrence.summary),
            starts_at=occurrence.starts_at,
            ends_at=occurrence.ends_at,
            status=meeting_status(occurrence, set(people.externals)),
            sequence=occurrence.sequence,
            organizer=stored,
            direction="inbound" if organizer in people.externals else "outbound",
            fingerprint=occurrence.fingerprint,
            participants=people.matched,
        )


@dataclass(frozen=True, slots=True)
class _People:
    externals: frozenset[str]
    matched: list[tuple[Participant, Match]]


def _storable(href: str, etag: str, calendar: str) -> bool:
    """Whether an object's href and etag fit the columns that key it.  A server that names
    an object beyond them (or with a NUL) gets that object skipped, logged, never a
    calendar that fails on every sync."""
    if bound_text(href, HREF_CHARS) == href and bound_text(etag, ETAG_CHARS) == etag:
        return True
    log.warning(
        "calendar.skipped",
        calendar=calendar,
        href=loggable(href),
        reason=f"href over {HREF_CHARS} or etag over {ETAG_CHARS} characters, or unstorable",
    )
    return False


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
