"""The server data behind tests/fixtures/syncd-0010.db, and how that file was made.

The file is a database written by syncd at revision 0010 (main before issue #12 gave every
kind of source one state and one quarantine table).  `python -m tests.migration_scenario
OUT.db` made it with that code: it starts Dovecot and Radicale, lays out the data below and
runs `syncd sync` twice.  The upgrade test lays out the same data on fresh servers, so that a
sync after the upgrade meets exactly what the old code had read.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from tests.conftest import World
from tests.mail import make_message
from tests.servers.dovecot import Dovecot
from tests.servers.radicale import Radicale

CUSTOMERS = (
    "customer,domains,contact_name,contact_email\nAcme Corp,acme.com,Wile Coyote,wile@acme.com\n"
)
# Calendar objects: Radicale's ETags and sync tokens hash the content, so the same text on
# a fresh server gives the same ETags the old database remembers.
MEETING = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
    "UID:review-1\r\nDTSTAMP:20240101T000000Z\r\nDTSTART:20261120T100000Z\r\n"
    "DTEND:20261120T110000Z\r\nSUMMARY:Review\r\n"
    "ORGANIZER;CN=Alice:mailto:alice@example.com\r\n"
    "ATTENDEE;CN=Wile;PARTSTAT=ACCEPTED:mailto:wile@acme.com\r\n"
    "END:VEVENT\r\nEND:VCALENDAR\r\n"
)
# A meeting with more attendees than syncd keeps: captured, and listed in the quarantine.
CROWD = MEETING.replace("review-1", "crowd-1").replace(
    "ATTENDEE;CN=Wile",
    "".join(f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:p{n}@acme.com\r\n" for n in range(250))
    + "ATTENDEE;CN=Wile",
)


def messages() -> list[bytes]:
    """INBOX in delivery order (UIDs 1..5): three captured, one skipped, one quarantined."""
    day = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    return [
        make_message(message_id="<m1@acme.com>", subject="Quote", date=day),
        make_message(message_id="<m2@acme.com>", subject="Re: Quote", date=day),
        make_message(
            message_id="<auto@acme.com>",
            subject="Out of office",
            date=day,
            headers={"Auto-Submitted": "auto-replied"},
        ),
        b"Subject: no sender at all\r\nMessage-ID: <nofrom@acme.com>\r\n\r\nbody\r\n",
        make_message(message_id="<m3@acme.com>", subject="Order", date=day),
    ]


USERS = {"user0": "pw-user0", "user1": "pw-user1"}
CAL_USERS = {"cal0": "pw-cal0", "cal1": "pw-cal1"}


def lay_out(world: World, dovecot: Dovecot, radicale: Radicale) -> None:
    """alice: a mailbox (INBOX and a folder that does not exist) and a calendar with one
    meeting and one crowded one (quarantined); bob: a mailbox and a calendar whose
    passwords are wrong.  The servers are fresh ones with USERS and CAL_USERS."""
    world.radicale = radicale
    for name, login, cal_login in (("alice", "user0", "cal0"), ("bob", "user1", "cal1")):
        world.logins[name] = login
        world.cal_logins[name] = cal_login
        radicale.make_calendar(cal_login, "work", "Work")
        good = name == "alice"
        (world.tmp / f"{name}.pass").write_text((dovecot.users[login] if good else "x") + "\n")
        (world.tmp / f"{name}.calpass").write_text(
            (radicale.users[cal_login] if good else "x") + "\n"
        )
    for raw in messages():
        world.deliver("alice", raw)
    world.put_event("alice", "review-1.ics", MEETING)
    world.put_event("alice", "crowd-1.ics", CROWD)
    world.write_config(mailbox={"alice": {"folders": ["INBOX", "Missing"]}})


def main(out: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="syncd-fixture-"))
    root.chmod(0o755)  # Dovecot's own users read below it
    dovecot = Dovecot(root / "dovecot", USERS, tls=True).start()
    radicale = Radicale(root / "radicale", CAL_USERS).start()
    try:
        tmp = root / "world"
        tmp.mkdir()
        world = World(dovecot, tmp, f"sqlite:///{tmp / 'syncd.db'}")
        lay_out(world, dovecot, radicale)
        world.customers(CUSTOMERS)
        print(world.cli("sync", expect=1).output)
        print(world.cli("sync", expect=1).output)  # the second gets the sync tokens
        # The backup API, not a file copy: the last writes may still sit in the WAL file.
        with sqlite3.connect(tmp / "syncd.db") as source, sqlite3.connect(out) as target:
            source.backup(target)
    finally:
        dovecot.stop()
        radicale.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
