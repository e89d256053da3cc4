"""The CalendarSession contract, on the in-memory fake and on Radicale alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncd.connectors.base import CalendarSession, Changes
from syncd.domain.calendar_limits import MAX_OBJECT_BYTES
from syncd.errors import RemoteConfigError
from tests.contract.conftest import CalendarBackend

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
WINDOW = (NOW - timedelta(days=30), NOW + timedelta(days=30))


def event(uid: str, start: datetime, summary: str = "Review", extra: str = "") -> str:
    stamp = "%Y%m%dT%H%M%SZ"
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//contract//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20240101T000000Z\r\nDTSTART:{start:{stamp}}\r\n"
        f"DTEND:{start + timedelta(hours=1):{stamp}}\r\nSUMMARY:{summary}\r\n{extra}"
        "ATTENDEE:mailto:wile@acme.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


SOON = event("soon", NOW + timedelta(days=2))
LATER = event("later", NOW + timedelta(days=5))
HISTORY = event("history", NOW - timedelta(days=400))


def _objects(changes: Changes) -> dict[str, str]:
    return {o.href: o.etag for o in changes.changed}


def _session(calendars: CalendarBackend) -> CalendarSession:
    return calendars.open()


class TestCalendarContract:
    def test_discovery_names_every_calendar(self, calendars: CalendarBackend) -> None:
        work = calendars.make_calendar("work", "Work")
        home = calendars.make_calendar("home", "Home")
        session = _session(calendars)
        try:
            found = {c.url: c.name for c in session.discover()}
        finally:
            session.close()
        assert found == {work: "Work", home: "Home"}

    def test_first_sync_reads_the_window_and_later_ones_follow_the_token(
        self, calendars: CalendarBackend
    ) -> None:
        url = calendars.make_calendar("work", "Work")
        calendars.put("work", "soon.ics", SOON)
        calendars.put("work", "history.ics", HISTORY)
        session = _session(calendars)
        try:
            first = session.changes(url, None, {}, window=WINDOW)
            # Only the events in the window, with their data; no token yet.
            assert first.method == "query" and first.token is None
            assert [o.href for o in first.changed] == [calendars.href("work", "soon.ics")]
            assert "UID:soon" in first.changed[0].data and first.changed[0].etag
            known = _objects(first)
            # The next sync lists ETags: the old event is remembered, not downloaded.
            listing = session.changes(url, None, known, window=WINDOW)
            assert listing.method == "full-token" and listing.token
            assert listing.changed == [] and listing.deleted == []
            assert set(listing.unread) == {calendars.href("work", "history.ics")}
            known.update(listing.unread)
            token = listing.token
            # Nothing changed: the token answers nothing.
            quiet = session.changes(url, token, known, window=WINDOW)
            assert quiet.method == "token" and quiet.changed == [] and quiet.deleted == []
            token = quiet.token or token
        finally:
            session.close()
        calendars.put("work", "later.ics", LATER)
        calendars.put("work", "soon.ics", SOON.replace("Review", "Planning"))
        calendars.delete("work", "history.ics")
        session = _session(calendars)
        try:
            changed = session.changes(url, token, known, window=WINDOW)
        finally:
            session.close()
        assert changed.method == "token" and changed.token and changed.token != token
        assert sorted(o.href for o in changed.changed) == [
            calendars.href("work", "later.ics"),
            calendars.href("work", "soon.ics"),
        ]
        soon = next(o for o in changed.changed if o.href.endswith("soon.ics"))
        assert "Planning" in soon.data and soon.etag != known[soon.href]
        assert changed.deleted == [calendars.href("work", "history.ics")]

    def test_an_invalid_token_falls_back_to_the_etags(self, calendars: CalendarBackend) -> None:
        url = calendars.make_calendar("work", "Work")
        calendars.put("work", "soon.ics", SOON)
        calendars.put("work", "later.ics", LATER)
        session = _session(calendars)
        try:
            known = _objects(session.changes(url, None, {}, window=WINDOW))
            gone = calendars.href("work", "gone.ics")
            known[gone] = '"an-etag-never-served"'
            calendars.put("work", "later.ics", LATER.replace("Review", "Planning"))
            answer = session.changes(url, "http://example.invalid/sync/nonsense", known)
        finally:
            session.close()
        assert answer.method == "full-token" and answer.token
        assert [o.href for o in answer.changed] == [calendars.href("work", "later.ics")]
        assert answer.deleted == [gone]

    def test_multiget_returns_what_is_there(self, calendars: CalendarBackend) -> None:
        url = calendars.make_calendar("work", "Work")
        calendars.put("work", "soon.ics", SOON)
        calendars.put("work", "later.ics", LATER)
        session = _session(calendars)
        try:
            hrefs = [calendars.href("work", n) for n in ("soon.ics", "missing.ics", "later.ics")]
            got = session.fetch(url, hrefs)
        finally:
            session.close()
        assert [o.href for o in got] == sorted([hrefs[0], hrefs[2]])
        assert all(o.etag and "BEGIN:VCALENDAR" in o.data for o in got)

    def test_time_range_and_versions_for_verify(self, calendars: CalendarBackend) -> None:
        url = calendars.make_calendar("work", "Work")
        calendars.put("work", "soon.ics", SOON)
        calendars.put("work", "history.ics", HISTORY)
        session = _session(calendars)
        try:
            listed = session.window_etags(url, *WINDOW)
            assert set(listed) == {calendars.href("work", "soon.ics")}
            version = session.collection_version(url)
            token = session.changes(url, None, {"x": "y"}).token
            assert version and token
            assert session.changed_since(url, token) == set()
            assert session.changed_since(url, "http://example.invalid/sync/nonsense") is None
        finally:
            session.close()
        calendars.put("work", "later.ics", LATER)
        session = _session(calendars)
        try:
            assert session.collection_version(url) != version
            assert session.changed_since(url, token) == {calendars.href("work", "later.ics")}
        finally:
            session.close()

    def test_an_object_over_the_limit_is_listed_not_downloaded(
        self, calendars: CalendarBackend
    ) -> None:
        url = calendars.make_calendar("work", "Work")
        big = event("big", NOW + timedelta(days=3), extra=_description(MAX_OBJECT_BYTES + 10_000))
        calendars.put("work", "big.ics", big)
        calendars.put("work", "soon.ics", SOON)
        session = _session(calendars)
        try:
            answer = session.changes(url, None, {"/elsewhere": '"1"'}, window=WINDOW)
        finally:
            session.close()
        # Accounted for either way: a server announcing sizes (getcontentlength) lets the
        # connector skip the download; one that does not (Radicale) serves it whole, and the
        # reader refuses it (test_engine_edges.py).  Never lost, never cut.
        big_href, soon_href = calendars.href("work", "big.ics"), calendars.href("work", "soon.ics")
        downloaded = {o.href: o.data for o in answer.changed}
        assert soon_href in downloaded
        if big_href in answer.oversized:
            etag, reason = answer.oversized[big_href]
            assert etag and "over the limit" in reason and big_href not in downloaded
        else:
            assert len(downloaded[big_href].encode()) > MAX_OBJECT_BYTES
        assert set(downloaded) | set(answer.oversized) == {big_href, soon_href}

    def test_a_calendar_that_is_gone_is_a_config_error(self, calendars: CalendarBackend) -> None:
        url = calendars.make_calendar("old", "Old")
        calendars.make_calendar("work", "Work")
        calendars.put("old", "soon.ics", SOON)
        calendars.remove_calendar("old")
        session = _session(calendars)
        try:
            assert [c.name for c in session.discover()] == ["Work"]
            with pytest.raises(RemoteConfigError):
                session.changes(url, None, {}, window=WINDOW)
        finally:
            session.close()


def _description(size: int) -> str:
    """A DESCRIPTION of ``size`` bytes, folded as RFC 5545 wants (servers refuse long lines)."""
    text = "DESCRIPTION:" + "x" * size
    return "\r\n ".join(text[i : i + 70] for i in range(0, len(text), 70)) + "\r\n"
