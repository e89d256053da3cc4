"""The quick-start demo: a local Dovecot with two reps' sample mail and a Radicale with
customer meetings, then syncd end to end.

    python -m tests.servers.demo [WORKDIR]     # from the checkout's root (scripts/demo.sh)

Everything stays under WORKDIR (default ./demo) and on 127.0.0.1.  It prints a customer
timeline and the follow-up tasks, then runs the daemon (`syncd run`) long enough to show a
delivered message captured through IMAP IDLE, and stops it with SIGTERM.

syncd runs as the installed `syncd` command, as a user would type it: the demo shows the
real command line and its output, and depends on nothing inside the CLI package.
"""

from __future__ import annotations

import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.servers.dovecot import Dovecot
from tests.servers.radicale import Radicale
from tests.servers.sample import CUSTOMERS_CSV, REPS, generate

# The console script installed beside this interpreter (.venv/bin/syncd).
SYNCD = str(Path(sys.executable).parent / "syncd")


def _run(*args: str, expected: tuple[int, ...] = (0,)) -> None:
    print(f"\n$ syncd {shlex.join(args)}", flush=True)
    done = subprocess.run([SYNCD, *args], check=False)
    if done.returncode not in expected:  # shown, and the demo keeps going
        print(f"(exit status {done.returncode})", flush=True)


def sample_meetings(now: datetime) -> dict[str, str]:
    """A few customer meetings around now in Alice's calendar, one of them weekly."""

    def event(uid: str, start: datetime, summary: str, attendee: str, extra: str = "") -> str:
        return (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//syncd demo//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}@demo.example.com\r\nDTSTAMP:20240101T000000Z\r\n"
            f"DTSTART:{start:%Y%m%dT%H%M%SZ}\r\nDTEND:{start + timedelta(hours=1):%Y%m%dT%H%M%SZ}\r\n"
            f"SUMMARY:{summary}\r\nORGANIZER;CN=Alice Rep:mailto:alice@example.com\r\n"
            f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:{attendee}\r\n{extra}END:VEVENT\r\nEND:VCALENDAR\r\n"
        )

    day = now.replace(hour=9, minute=0, second=0, microsecond=0)
    return {
        "kickoff.ics": event("kickoff", day - timedelta(days=10), "Acme kick-off", "wile@acme.com"),
        "weekly.ics": event(
            "weekly",
            day - timedelta(days=14),
            "Acme weekly",
            "road.runner@acme.com",
            "RRULE:FREQ=WEEKLY;COUNT=6\r\n",
        ),
        "globex.ics": event(
            "globex", day + timedelta(days=2), "Globex pricing review", "hank@globex.co.uk"
        ),
        "lunch.ics": event("lunch", day + timedelta(days=1), "Team lunch", "bob@example.com"),
    }


def write_config(root: Path, dovecot: Dovecot, passwords: dict[str, Path]) -> Path:
    boxes = "".join(
        f"""
[[mailbox]]
name = "{rep.split("@")[0]}"
owner = "{rep}"
host = "127.0.0.1"
port = {dovecot.port}
security = "plain"
username = "{rep}"
password_file = "{passwords[rep]}"
"""
        for rep in REPS
    )
    config = root / "syncd.toml"
    config.write_text(
        '[database]\nurl = "sqlite:///syncd.db"\n\n[organization]\ninternal_domains = ["example.com"]\n'
        + boxes
    )
    return config


def add_calendar(config: Path, radicale: Radicale, password_file: Path) -> None:
    with config.open("a") as out:
        out.write(
            f'\n[[calendar]]\nname = "alice-cal"\nowner = "alice@example.com"\nurl = "{radicale.url}"\n'
            f'username = "alice"\npassword_file = "{password_file}"\n'
        )


def _daemon_demo(config: Path, dovecot: Dovecot, db: Path) -> None:
    """`syncd run` for a few seconds: a message delivered while it waits in IDLE is captured."""
    print(
        f"\n$ syncd --config {config} run   # in the background; its log: demo/daemon.log",
        flush=True,
    )
    log = config.parent / "daemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen([SYNCD, "--config", str(config), "run"], stdout=out, stderr=out)
    try:
        time.sleep(3)  # first round of syncs, then IDLE
        before = _count(db)
        raw = (
            "From: Wile Coyote <wile@acme.com>\r\nTo: Alice Rep <alice@example.com>\r\n"
            "Subject: Can we talk today?\r\nMessage-ID: <demo-push@acme.com>\r\n"
            f"Date: {datetime.now(UTC):%a, %d %b %Y %H:%M:%S +0000}\r\n\r\nCall me.\r\n"
        ).encode()
        delivered = time.monotonic()
        dovecot.deliver("alice@example.com", raw)
        while _count(db) == before and time.monotonic() - delivered < 30:
            time.sleep(0.05)
        took = time.monotonic() - delivered
        print(f"delivered a message to alice's INBOX: a record {took:.1f}s later (IMAP IDLE)")
    finally:
        daemon.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        code = daemon.wait(20)
        print(f"SIGTERM: the daemon exited {code} after {time.monotonic() - stopped:.1f}s")


def _count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM records").fetchone()[0])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0] if argv else "demo").resolve()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    secrets = root / "secrets"
    secrets.mkdir(mode=0o700)
    passwords: dict[str, Path] = {}
    for n, rep in enumerate(REPS):
        passwords[rep] = secrets / rep.split("@")[0]
        passwords[rep].write_text(f"demo-secret-{n}-{rep.split('@')[0]}\n")
        passwords[rep].chmod(0o600)
    # Dovecot's unprivileged users must reach its files: keep them out of a private home folder.
    server_root = Path(tempfile.mkdtemp(prefix="syncd-demo-dovecot-"))
    dovecot = Dovecot(
        server_root, {rep: passwords[rep].read_text().strip() for rep in REPS}
    ).start()
    dav_password = secrets / "alice-dav"
    dav_password.write_text("demo-secret-dav\n")
    dav_password.chmod(0o600)
    radicale = Radicale(root / "radicale", {"alice": "demo-secret-dav"}).start()
    try:
        radicale.make_calendar("alice", "work", "Work")
        radicale.seed("alice", "work", sample_meetings(datetime.now(UTC)))
        # Last week's mail, so that the follow-up rules (which look 14 days back) have work.
        mail = generate(400, start=datetime.now(UTC) - timedelta(days=9))
        by_box: dict[tuple[str, str], list[bytes]] = defaultdict(list)
        for item in mail:
            by_box[(item.owner, item.folder)].append(item.raw)
        for (owner, folder), raws in by_box.items():
            dovecot.deliver_many(owner, raws, folder=folder)
        print(
            f"Dovecot on 127.0.0.1:{dovecot.port} with {len(mail)} sample messages for {', '.join(REPS)}"
        )
        config = write_config(root, dovecot, passwords)
        add_calendar(config, radicale, dav_password)
        print(f"Radicale on 127.0.0.1:{radicale.port} with Alice's calendar of customer meetings")
        (root / "customers.csv").write_text(CUSTOMERS_CSV)
        base = ["--config", str(config)]
        _run(*base, "check")
        _run(*base, "customers", "import", str(root / "customers.csv"))
        _run(*base, "sync")
        _run(*base, "sync")  # nothing new: one EXAMINE per folder, one request per calendar
        _run(*base, "status", expected=(0, 3))  # 3: no daemon runs yet; it starts below
        _run(*base, "records", "list", "--customer", "Globex", "--limit", "5")
        _run(*base, "records", "list", "--kind", "meeting")
        _run(*base, "timeline", "Acme Corp", "--limit", "12")
        _run(*base, "tasks", "list", "--owner", "alice@example.com", "--customer", "Acme Corp")
        _run(*base, "customers", "list", "--sort", "last-contact")  # who is going quiet
        _run(*base, "report", "responses", "--by", "rep")
        _run(*base, "events", "list", "--type", "task.created", "--limit", "3")  # the CRM's feed
        _daemon_demo(config, dovecot, root / "syncd.db")
    finally:
        radicale.stop()
        dovecot.stop()
        shutil.rmtree(server_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
