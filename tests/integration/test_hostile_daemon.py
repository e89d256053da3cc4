"""`syncd run` fed the worst message of each kind (issue #11): the daemon never stalls.

A parser that holds the GIL (a backtracking regex) freezes every thread of the daemon:
heartbeat, watchdog pings, /healthz.  So /healthz is polled every 50 ms while the hostile
corpus is delivered, and every answer must come within 2 s of the previous one.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from syncd.schema.tables import daemons, records
from tests.conftest import World
from tests.daemon import DaemonProcess, wait_until
from tests.integration.test_daemon import _first_sync_done
from tests.mail import make_message
from tests.servers.dovecot import Dovecot
from tests.servers.ports import free_port
from tests.servers.radicale import Radicale
from tests.servers.sample import CUSTOMERS_CSV

pytestmark = [pytest.mark.dovecot, pytest.mark.daemon]

CORPUS = Path(__file__).parent.parent / "corpus" / "mail"
MAX_STALL = 2.0


class HealthWatch:
    """Polls /healthz and the heartbeat row from a thread; remembers the longest silence."""

    def __init__(self, url: str, db_url: str) -> None:
        self.url = url
        self.engine = create_engine(db_url)
        self.longest_gap = 0.0
        self.oldest_heartbeat = 0.0
        self.answers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=10) as response:  # noqa: S310 - loopback
                    ok = response.status == 200
            except OSError:
                ok = False
            now = time.monotonic()
            if ok:
                self.longest_gap = max(self.longest_gap, now - last)
                self.answers += 1
                last = now
            with self.engine.connect() as conn:
                beat = conn.scalar(select(func.max(daemons.c.heartbeat_at)))
            if beat is not None:  # SQLite gives it back naive; it is stored in UTC
                when = beat if beat.tzinfo else beat.replace(tzinfo=UTC)
                age = (datetime.now(UTC) - when).total_seconds()
                self.oldest_heartbeat = max(self.oldest_heartbeat, age)
            time.sleep(0.05)
        # A stall still under way when we stop counts too.
        self.longest_gap = max(self.longest_gap, time.monotonic() - last)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.engine.dispose()


def _has_record(db_url: str, message_id: str) -> bool:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return bool(
                conn.scalar(
                    select(func.count())
                    .select_from(records)
                    .where(records.c.message_id == message_id)
                )
            )
    finally:
        engine.dispose()


def test_the_hostile_corpus_never_stalls_the_daemon(dovecot: Dovecot, tmp_path: Path) -> None:
    world = World(dovecot, tmp_path, f"sqlite:///{tmp_path / 'syncd.db'}")
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    port = free_port()
    config = world.write_config(
        extra=f'[sync]\ninterval = 2\njitter = 0.1\n\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
    )
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    try:
        wait_until(lambda: _first_sync_done(world), 30, "first sync")
        hostile = [path.read_bytes() for path in sorted(CORPUS.glob("*.eml"))]
        # The endless header at the size of the report: 18 MB, no blank line.
        line = b"X-Filler: " + b"f" * 66 + b"\r\n"
        hostile.append(
            b"From: wile@acme.com\r\nTo: alice@example.com\r\nSubject: endless\r\n"
            + line * (18 * 1024 * 1024 // len(line))
        )
        with HealthWatch(f"http://127.0.0.1:{port}/healthz", world.db_url) as watch:
            time.sleep(0.5)
            world.dovecot.deliver_many(world.logins["alice"], hostile)
            time.sleep(0.2)
            world.deliver("alice", make_message(message_id="<after-the-storm@acme.com>"))
            wait_until(
                lambda: _has_record(world.db_url, "after-the-storm@acme.com"),
                60,
                "the ordinary message after the hostile ones",
            )
            # Enough samples to mean something, however fast the storm passed.
            wait_until(lambda: watch.answers > 20, 15, "health samples")
        assert watch.answers > 20
        assert watch.longest_gap < MAX_STALL, f"/healthz was silent {watch.longest_gap:.1f}s"
        # The heartbeat row is written every 5 s; a stall would let it age past that.
        assert watch.oldest_heartbeat < 5.0 + MAX_STALL, watch.oldest_heartbeat
        assert daemon.proc is not None and daemon.proc.poll() is None
        code, _ = daemon.stop()
        assert code == 0
        log = daemon.log.read_text()
        assert "Traceback" not in log
    finally:
        daemon.close()


def _has_meeting(db_url: str, uid: str) -> bool:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return bool(
                conn.scalar(
                    select(func.count()).select_from(records).where(records.c.ical_uid == uid)
                )
            )
    finally:
        engine.dispose()


CALENDAR_CORPUS = Path(__file__).parent.parent / "corpus" / "calendar"
# The corpus objects Radicale itself can take: it expands a SECONDLY series or a rule of
# every second of the year on PUT for minutes, and its own line parser backtracks on
# attendee-param-backtracking.ics (those are read in tests/unit/test_calendar_limits).
ON_RADICALE = (
    "crowd-2000-daily.ics",
    "daily-1900-exdates.ics",
    "daily-1900-exdates-after-window.ics",
    "long-organizer.ics",
    "long-uid.ics",
    "minutely.ics",
    "minutely-count-3000.ics",
    "nul-summary.ics",
    "reference-weekly.ics",
    "sequence-abc.ics",
)


@pytest.mark.radicale
def test_the_hostile_calendar_corpus_never_stalls_the_daemon(
    dovecot: Dovecot, radicale: Radicale, tmp_path: Path
) -> None:
    world = World(dovecot, tmp_path, f"sqlite:///{tmp_path / 'syncd.db'}")
    world.rep("alice")
    world.cal_rep("alice", radicale)
    world.customers(CUSTOMERS_CSV)
    port = free_port()
    config = world.write_config(
        extra=f'[sync]\ninterval = 2\njitter = 0.1\n\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
    )
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    try:
        wait_until(lambda: _first_sync_done(world), 30, "first sync")
        stored = []
        with HealthWatch(f"http://127.0.0.1:{port}/healthz", world.db_url) as watch:
            time.sleep(0.5)
            for name in ON_RADICALE:
                path = CALENDAR_CORPUS / name
                try:  # Radicale refuses some (a bogus DURATION or rule): the rest go in
                    world.put_event("alice", path.name, path.read_bytes().decode())
                    stored.append(path.name)
                except urllib.error.HTTPError:
                    continue
            today = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
            after = today + timedelta(days=2)
            world.put_event(
                "alice",
                "after-the-storm.ics",
                "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\n"
                f"UID:after-the-storm\r\nDTSTAMP:20240101T000000Z\r\n"
                f"DTSTART:{after:%Y%m%dT%H%M%SZ}\r\n"
                f"DTEND:{after + timedelta(hours=1):%Y%m%dT%H%M%SZ}\r\nSUMMARY:Calm\r\n"
                "ATTENDEE;PARTSTAT=ACCEPTED:mailto:wile@acme.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            )
            wait_until(
                lambda: _has_meeting(world.db_url, "after-the-storm"),
                120,
                "the ordinary meeting after the hostile ones",
            )
            wait_until(lambda: watch.answers > 20, 15, "health samples")
        # The worst ones are among what the daemon read: the sub-hourly rules, the crowd,
        # 1,000 EXDATEs from 1900.
        assert {
            "minutely.ics",
            "crowd-2000-daily.ics",
            "daily-1900-exdates.ics",
        } <= set(stored), stored
        assert watch.answers > 20
        assert watch.longest_gap < MAX_STALL, f"/healthz was silent {watch.longest_gap:.1f}s"
        assert watch.oldest_heartbeat < 5.0 + MAX_STALL, watch.oldest_heartbeat
        assert daemon.proc is not None and daemon.proc.poll() is None
        code, _ = daemon.stop()
        assert code == 0
        assert "Traceback" not in daemon.log.read_text()
    finally:
        daemon.close()
