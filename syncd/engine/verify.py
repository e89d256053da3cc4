"""`syncd verify`: account for every message and calendar object the server has.

Each UID the server lists in a captured folder is a record, skipped by a named rule,
quarantined, not synced yet (above the cursor), or missing; each event a captured calendar
lists in the window is a known object, quarantined, changed since the last sync, or missing.
Used by the CLI, by `syncd sync --repair` and by the daemon on its `verify_interval`.

Cheap on unchanged folders: a clean verify remembers a fingerprint of the folder (UIDVALIDITY,
UIDNEXT, EXISTS: the UID set cannot change without one of them changing) and of what the store
holds for it (cursor and row counts).  While both match, the listing is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from syncd.config import CalendarConfig, Config, MailboxConfig
from syncd.connectors.base import CalendarSession, MailSession
from syncd.domain.accounting import Tally, account_hrefs, account_uids, skip_rule
from syncd.domain.matching import Directory
from syncd.engine.imap.pipeline import Policy, Skipped, process
from syncd.engine.imap.unchanged import SessionOpener, open_imap
from syncd.errors import RemoteConfigError, RemoteError, VerifyStopped, describe
from syncd.logs import get_logger
from syncd.store import state
from syncd.store import verify as store
from syncd.store.capture import record_skips
from syncd.store.directory import load_directory
from syncd.store.sql import chunks

log = get_logger("syncd.verify")


@dataclass(slots=True)
class PlaceReport:
    """One folder of a mailbox, or one calendar collection of a calendar source."""

    place: str  # folder name, or calendar display name
    tally: Tally = field(default_factory=Tally)
    unchanged: bool = False  # nothing changed since the last clean verify: counts reused
    cached: dict[str, Any] | None = None
    error: str | None = None
    uidvalidity: int | None = None
    url: str | None = None  # calendars

    @property
    def missing(self) -> list[int | str]:
        return list(self.tally.unaccounted)

    def counts(self) -> dict[str, Any]:
        return dict(self.cached) if self.cached is not None else self.tally.as_counts()

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "place": self.place,
            **self.counts(),
            "missing": len(self.missing),
            "missing_items": self.missing,
            "unchanged": self.unchanged,
            "error": self.error,
        }
        if self.url is not None:
            out["url"] = self.url
        return out


@dataclass(slots=True)
class SourceReport:
    kind: str  # mailbox | calendar
    source: str
    places: list[PlaceReport] = field(default_factory=list)
    error: str | None = None  # the whole source could not be verified (login, network)

    @property
    def missing(self) -> int:
        return sum(len(p.missing) for p in self.places)

    @property
    def failed(self) -> bool:
        return self.error is not None or any(p.error for p in self.places)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "missing": self.missing,
            "error": self.error,
            "places": [p.as_json() for p in self.places],
        }


class Verifier:
    """Verifies mailboxes and calendars of one config against one database."""

    def __init__(
        self,
        engine: Engine,
        config: Config,
        *,
        opener: SessionOpener = open_imap,
        dav_opener: Callable[[CalendarConfig], CalendarSession] | None = None,
        now: Callable[[], datetime] | None = None,
        fence: Callable[[Connection], None] = lambda _conn: None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self._engine = engine
        self._config = config
        # Asked before each folder or calendar and each batch re-read: a daemon's SIGTERM
        # must not wait for the verify of a big mailbox (what it wrote so far is kept).
        self._should_stop = should_stop
        # Runs first in each bookkeeping transaction: in the daemon, only the source's
        # lease holder writes (health.fence), as for a sync.
        self._fence = fence
        self._opener = opener
        self._dav_opener = dav_opener or _open_caldav
        self._now = now or (lambda: datetime.now(UTC))
        self._directory: Directory | None = None

    def directory(self) -> Directory:
        if self._directory is None:
            with self._engine.connect() as conn:
                self._directory = load_directory(conn, self._config.capture)
        return self._directory

    # --- mail -----------------------------------------------------------------------------------

    def verify_mailbox(self, box: MailboxConfig) -> SourceReport:
        report = SourceReport("mailbox", box.name)
        try:
            session = self._opener(box, self._config.capture.max_message_bytes)
        except RemoteError as err:
            report.error = describe(err)
            return report
        try:
            for folder in box.folders or session.default_folders():
                self._stop_if_asked()
                place = PlaceReport(folder)
                try:
                    self._verify_folder(session, box, place)
                except RemoteConfigError as err:
                    place.error = describe(err)
                report.places.append(place)
        except RemoteError as err:
            report.error = describe(err)
        finally:
            session.close()
        _log(report)
        return report

    def _verify_folder(self, session: MailSession, box: MailboxConfig, place: PlaceReport) -> None:
        status = session.examine(place.place)
        place.uidvalidity = status.uidvalidity
        # The cursor is read before the store's sets: any UID at or below it was committed
        # (with the cursor, in one transaction) before the sets are read.
        with self._engine.connect() as conn:
            cursor = state.get_cursor(conn, box.name, place.place)
            rows = store.folder_counts(conn, box.name, place.place, status.uidvalidity)
            last = store.last_clean(conn, "mailbox", box.name, place.place)
        synced_up_to = (
            cursor.last_uid
            if cursor is not None and cursor.uidvalidity == status.uidvalidity
            else 0
        )
        # HIGHESTMODSEQ is left out on purpose: it moves with every flag change (a message
        # read), which says nothing about which UIDs exist.
        fingerprint = f"{status.uidvalidity}:{status.uidnext}:{status.exists}:{synced_up_to}:{rows}"
        if status.uidnext is not None and last is not None and last[0] == fingerprint:
            place.unchanged, place.cached = True, last[1]
            return
        server_uids = session.uids_from(1)
        with self._engine.connect() as conn:
            known = store.folder_known(conn, box.name, place.place, status.uidvalidity)
        place.tally = account_uids(
            server_uids,
            synced_up_to=synced_up_to,
            recorded=known.recorded,
            quarantined=known.quarantined,
            skipped=known.skipped,
        )
        if place.tally.unaccounted:
            self._decide_again(session, box, place, status.uidvalidity)
        with self._engine.begin() as conn:
            self._fence(conn)
            if place.tally.unaccounted:
                store.forget_clean(conn, "mailbox", box.name, place.place)
            else:
                # Backfilled skips changed the row counts: fingerprint what the store holds now.
                rows = store.folder_counts(conn, box.name, place.place, status.uidvalidity)
                fingerprint = (
                    f"{status.uidvalidity}:{status.uidnext}:{status.exists}:{synced_up_to}:{rows}"
                )
                store.remember_clean(
                    conn, "mailbox", box.name, place.place, fingerprint, place.tally.as_counts()
                )

    def _decide_again(
        self, session: MailSession, box: MailboxConfig, place: PlaceReport, uidvalidity: int
    ) -> None:
        """Unaccounted UIDs: read them as a sync would and run the same pure decision.

        Messages captured before skips were recorded per UID have no skip row; a skip rule
        that still says "skip" is recorded now (backfill), and only what syncd should have
        captured (or quarantined) stays missing.  A UID expunged meanwhile is no longer on
        the server at all.
        """
        capture = self._config.capture
        policy = Policy(
            box.owner, self._config.internal_domains, capture.store, capture.only_matched
        )
        directory = self.directory()
        tally = place.tally
        pending = [int(uid) for uid in tally.unaccounted]
        tally.unaccounted = []
        skips: list[tuple[int, str]] = []
        for part in chunks(pending, capture.batch_size):
            if skips:  # the skips decided so far are kept whatever comes next
                with self._engine.begin() as conn:
                    self._fence(conn)
                    record_skips(conn, box.name, place.place, uidvalidity, skips)
                skips = []
            self._stop_if_asked()
            fetched = {m.uid: m for m in session.fetch(list(part))}
            for uid in part:
                message = fetched.get(uid)
                if message is None:
                    tally.server -= 1  # expunged between SEARCH and FETCH
                    continue
                result = process(message, policy, directory)
                if isinstance(result, Skipped):
                    rule = skip_rule(result.reason)
                    skips.append((uid, rule))
                    tally.skipped[rule] += 1
                else:
                    tally.unaccounted.append(uid)
        if skips:
            with self._engine.begin() as conn:
                self._fence(conn)
                record_skips(conn, box.name, place.place, uidvalidity, skips)

    def _stop_if_asked(self) -> None:
        if self._should_stop():
            raise VerifyStopped

    # --- calendars ----------------------------------------------------------------------------

    def window(self) -> tuple[datetime, datetime]:
        now = self._now()
        capture = self._config.capture
        return now - timedelta(days=capture.past_days), now + timedelta(days=capture.future_days)

    def verify_calendar(self, source: CalendarConfig) -> SourceReport:
        report = SourceReport("calendar", source.name)
        try:
            session = self._dav_opener(source)
        except RemoteError as err:
            report.error = describe(err)
            return report
        try:
            for calendar in session.discover():
                self._stop_if_asked()
                place = PlaceReport(calendar.name or calendar.url, url=calendar.url)
                try:
                    self._verify_collection(session, source, place, calendar.url)
                except RemoteConfigError as err:
                    place.error = describe(err)
                report.places.append(place)
        except RemoteError as err:
            report.error = describe(err)
        finally:
            session.close()
        _log(report)
        return report

    def _verify_collection(
        self, session: CalendarSession, source: CalendarConfig, place: PlaceReport, url: str
    ) -> None:
        version = session.collection_version(url)
        with self._engine.connect() as conn:
            synced, token = store.calendar_sync_state(conn, source.name, url)
            rows = store.calendar_counts(conn, source.name, url)
            last = store.last_clean(conn, "calendar", source.name, url)
        fingerprint = f"{version}:{synced}:{token}:{rows}"
        if version is not None and last is not None and last[0] == fingerprint:
            place.unchanged, place.cached = True, last[1]
            return
        listed = session.window_etags(url, *self.window())
        changed = session.changed_since(url, token) if token else None
        with self._engine.connect() as conn:
            known, held = store.calendar_known(conn, source.name, url)
        place.tally = account_hrefs(
            listed, synced=synced, known=known, quarantined=held, changed_since_sync=changed
        )
        with self._engine.begin() as conn:
            self._fence(conn)
            if place.tally.unaccounted or version is None:
                store.forget_clean(conn, "calendar", source.name, url)
            else:
                store.remember_clean(
                    conn, "calendar", source.name, url, fingerprint, place.tally.as_counts()
                )


def _open_caldav(source: CalendarConfig) -> CalendarSession:
    # The calendar stack (caldav, niquests) is imported only where a calendar is verified:
    # a mail-only `syncd sync --repair` or daemon never pays for it.
    from syncd.engine.calendar_sync import open_caldav

    return open_caldav(source)


def _log(report: SourceReport) -> None:
    for place in report.places:
        if place.missing:
            log.warning(
                "verify.missing",
                **{report.kind: report.source},
                place=place.place,
                count=len(place.missing),
                items=place.missing[:50],
            )
    if report.error:
        log.warning("verify.failed", **{report.kind: report.source}, error=report.error)
