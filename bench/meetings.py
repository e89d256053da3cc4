"""Calendar capture benchmark: syncd against the server's own listing, from one run.

    .venv/bin/python bench/meetings.py --events 2000

Seeds one Radicale calendar with N events (10 % weekly-recurring) through its storage
folder, warms Radicale's cache, then measures in the same run: a calendar-query REPORT of
everything with calendar data (what the server itself needs to list them), syncd's first
sync on SQLite (discover, fetch the window's events, expand, match, store), its second
sync (the ETag listing and sync token, and the objects beyond the window, which the first
sync leaves for it), and syncd's re-sync when nothing changed (time and requests).

``--library-only`` turns the fast reader (syncd/domain/simple_ical.py) off, so every
object is parsed by icalendar: run both to see whether the fast reader is still needed
(the target: a first sync within 2x the server's own calendar-query).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import urllib.request
from base64 import b64encode
from datetime import UTC, datetime, timedelta
from pathlib import Path

# The test servers and sample data are not installed: they live in the checkout's
# tests/servers/, so the checkout's root goes on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from syncd.config_file import parse_config
from syncd.engine.calendar_sync import CalendarSync
from syncd.store.database import open_database
from syncd.store.directory import ensure_customer
from tests.servers.radicale import Radicale

USER, PASSWORD = "bench", "bench-password"
QUERY = (
    '<?xml version="1.0" encoding="utf-8"?><C:calendar-query xmlns:D="DAV:" '
    'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/><C:calendar-data/></D:prop>'
    '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"/></C:comp-filter></C:filter>'
    "</C:calendar-query>"
)


def event(n: int, start: datetime) -> str:
    rule = "RRULE:FREQ=WEEKLY;COUNT=10\r\n" if n % 10 == 0 else ""
    when = start + timedelta(hours=n * 3)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//syncd bench//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:bench-{n}@example.com\r\nDTSTAMP:20240101T000000Z\r\n"
        f"DTSTART:{when:%Y%m%dT%H%M%SZ}\r\nDTEND:{when + timedelta(hours=1):%Y%m%dT%H%M%SZ}\r\n"
        f"SUMMARY:Customer call {n}\r\n{rule}"
        "ORGANIZER;CN=Alice:mailto:alice@example.com\r\n"
        f"ATTENDEE;CN=Contact {n};PARTSTAT=ACCEPTED:mailto:contact{n % 50}@customer{n % 7}.com\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def report(url: str, body: str, depth: str = "1") -> tuple[float, int]:
    request = urllib.request.Request(  # noqa: S310 - always http://127.0.0.1
        url,
        data=body.encode(),
        method="REPORT" if body.startswith("<?xml") and "query" in body else "PROPFIND",
        headers={
            "Authorization": "Basic " + b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
            "Content-Type": "application/xml",
            "Depth": depth,
        },
    )
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
        size = len(response.read())
    return time.perf_counter() - start, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument(
        "--library-only", action="store_true", help="read every object with icalendar"
    )
    args = parser.parse_args()
    if args.library_only:
        from syncd.domain import meetings

        meetings.FAST_READER = False
    work = Path(tempfile.mkdtemp(prefix="syncd-bench-cal-"))
    server = Radicale(work / "radicale", {USER: PASSWORD}).start()
    try:
        start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=60)
        server.make_calendar(USER, "work", "Work")
        server.seed(USER, "work", {f"e{n}.ics": event(n, start) for n in range(args.events)})
        url = f"{server.url}{USER}/work/"
        warm, _ = report(
            url,
            '<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>',
        )
        print(
            f"seeded {args.events} events ({args.events // 10} weekly-recurring); Radicale cache warmed in {warm:.2f}s"
        )

        query_s, size = report(url, QUERY)
        config = parse_config(
            {
                "database": {"url": f"sqlite:///{work / 'bench.db'}"},
                "organization": {"internal_domains": ["example.com"]},
                "calendar": [
                    {
                        "name": "alice-cal",
                        "owner": "alice@example.com",
                        "url": server.url,
                        "username": USER,
                        "password": PASSWORD,
                    }
                ],
            }
        )
        engine = open_database(config.database.url)
        with engine.begin() as conn:
            for n in range(7):
                ensure_customer(conn, f"Customer {n}", [f"customer{n}.com"])
        sync = CalendarSync(engine, config)
        t = time.perf_counter()
        (first,) = sync.run_once()
        first_s = time.perf_counter() - t
        assert first.ok, first.errors
        # The second sync lists ETags (nothing to download) and gets the server's first sync
        # token; from then on an unchanged calendar is one sync-collection REPORT.
        t = time.perf_counter()
        (second,) = sync.run_once()
        second_s = time.perf_counter() - t
        t = time.perf_counter()
        (again,) = sync.run_once()
        again_s = time.perf_counter() - t
        created = sum(c["created"] for c in first.calendars.values())
        changed = sum(c["created"] + c["updated"] for c in again.calendars.values())
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nserver calendar-query of everything : {query_s:7.2f}s ({size / 1e6:.1f} MB)")
    print(
        f"syncd first sync                    : {first_s:7.2f}s ({created} meeting occurrences, {first.requests} requests incl. discovery)"
    )
    print(
        f"syncd first sync / server listing   : {first_s / query_s:7.2f}x "
        f"({'icalendar only' if args.library_only else 'fast reader on'}; target 2x)"
    )
    print(
        f"syncd 2nd sync (token, rest)        : {second_s * 1000:7.1f} ms, {second.requests} request(s), "
        f"{sum(c['created'] + c['updated'] for c in second.calendars.values())} records touched"
    )
    print(
        f"syncd re-sync, nothing changed      : {again_s * 1000:7.1f} ms, {again.requests} request(s), {changed} records touched"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
