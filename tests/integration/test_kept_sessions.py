"""Kept IMAP sessions against a real Dovecot: fewer logins, one command per unchanged
folder, and a dropped connection (restart, kick, idle expiry) never costs a failed poll."""

from __future__ import annotations

import os
import re
import resource
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from syncd.config import Config, MailboxConfig
from syncd.config_file import parse_config
from syncd.connectors.base import MailSession
from syncd.connectors.imap import ImapSession
from syncd.engine.imap.mail_sync import open_imap
from syncd.engine.imap.sessions import DaemonSessions, SessionCache
from syncd.engine.sources import MailboxSource, SyncReport
from syncd.metrics import Metrics
from syncd.schema.tables import provenance, records
from syncd.store import database, state
from syncd.store.directory import load_directory
from tests.daemon import DaemonProcess, wait_until
from tests.mail import make_message
from tests.servers.dovecot import Dovecot
from tests.servers.ports import free_port

pytestmark = [pytest.mark.dovecot]

USERS = {f"kept{n}": f"pw-kept{n}" for n in range(4)}


@pytest.fixture(scope="module")
def server() -> Iterator[Dovecot]:
    # Its own Dovecot: these tests restart it and kick its users.
    root = Path(tempfile.mkdtemp(prefix="syncd-test-kept-"))
    dovecot = Dovecot(root, dict(USERS), tls=True).start()
    yield dovecot
    dovecot.stop()
    shutil.rmtree(root, ignore_errors=True)


@dataclass
class Commands:
    """Every IMAP command sent on sessions the opener made, in order (after login)."""

    sent: list[str] = field(default_factory=list)
    logins: int = 0

    def opener(self, box: MailboxConfig, max_bytes: int) -> MailSession:
        session = open_imap(box, max_bytes)
        self.logins += 1
        assert isinstance(session, ImapSession)
        imap = session._client._imap
        send = imap.send

        def recorded(data: bytes) -> None:
            # Every command line starts with its tag: "<tag> UID FETCH ...", "<tag> STATUS ...".
            words = data.split(b" ", 3)
            if len(words) > 1 and words[0].startswith(imap.tagpre):
                name = words[1].decode().upper()
                if name == "UID" and len(words) > 2:
                    name += " " + words[2].decode().upper()
                self.sent.append(name)
            send(data)

        imap.send = recorded
        return session

    def take(self) -> list[str]:
        out, self.sent = self.sent, []
        return out


class Rig:
    """Mailboxes of the test Dovecot polled in-process, as the daemon's workers poll them."""

    def __init__(
        self,
        server: Dovecot,
        tmp_path: Path,
        users: list[str],
        *,
        tls: bool = False,
        folders: tuple[str, ...] = ("INBOX", "Sent"),
        **sync: Any,
    ) -> None:
        self.server = server
        # Each test starts from empty mailboxes: mail of an earlier test is not news.
        for user in users:
            for folder in ("INBOX", "Sent"):
                for sub in ("cur", "new"):
                    for path in (server.maildir(user, folder) / sub).iterdir():
                        path.unlink()
        boxes = [
            {
                "name": user,
                "owner": f"{user}@example.com",
                "host": "127.0.0.1",
                "username": user,
                "password": USERS[user],
                "folders": list(folders),
                **(
                    {"port": server.tls_port, "security": "tls", "ca_file": str(server.cert_file)}
                    if tls
                    else {"port": server.port, "security": "plain"}
                ),
            }
            for user in users
        ]
        self.config: Config = parse_config(
            {
                "database": {"url": f"sqlite:///{tmp_path / 'kept.db'}"},
                "organization": {"internal_domains": ["example.com"]},
                "sync": {"keep_connections": 100, "connection_idle_timeout": 600, **sync},
                "mailbox": boxes,
            }
        )
        self.engine: Engine = database.open_database(self.config.database.url)
        self.metrics = Metrics()
        self.commands = Commands()
        self.sessions = DaemonSessions(self.config.sync, self.metrics, self.commands.opener)
        self.sources = [
            MailboxSource(self.engine, self.config, box, self.sessions)
            for box in self.config.mailbox
        ]

    def poll(self, name: str | None = None) -> list[SyncReport]:
        with self.engine.connect() as conn:
            directory = load_directory(conn, self.config.capture)
        return [s.sync(directory) for s in self.sources if name is None or s.name == name]

    def logins(self, outcome: str = "ok") -> float:
        value = self.metrics.registry.get_sample_value(
            "syncd_imap_logins_total", {"outcome": outcome}
        )
        return value or 0.0

    def records(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(records)) or 0)

    def close(self) -> None:
        self.sessions.close_all()
        self.engine.dispose()


@pytest.fixture
def rig(server: Dovecot, tmp_path: Path) -> Iterator[Any]:
    made: list[Rig] = []

    def make(users: list[str], *, tls: bool = False, **sync: Any) -> Rig:
        made.append(Rig(server, tmp_path, users, tls=tls, **sync))
        return made[-1]

    yield make
    for one in made:
        one.close()


def _server_logins(server: Dovecot, user: str) -> int:
    log = (server.root / "dovecot.log").read_text()
    return len(re.findall(rf"imap-login: Info: Login: user=<{user}>", log))


def _wait_log(server: Dovecot, pattern: str, count: int) -> int:
    deadline = time.monotonic() + 10
    found = 0
    while time.monotonic() < deadline:
        found = len(re.findall(pattern, (server.root / "dovecot.log").read_text()))
        if found >= count:
            break
        time.sleep(0.05)
    return found


def test_three_mailboxes_polled_five_times_log_in_three_times(server: Dovecot, rig: Any) -> None:
    users = ["kept0", "kept1", "kept2"]
    before = {user: _server_logins(server, user) for user in users}
    r = rig(users)
    for user in users:
        server.deliver(user, make_message(message_id=f"<first-{user}@acme.com>"))
    for _ in range(5):
        assert all(report.ok for report in r.poll())
    assert r.logins() == 3 and r.commands.logins == 3
    assert r.metrics.registry.get_sample_value("syncd_imap_sessions_reused_total") == 12
    assert sorted(r.sessions.kept()) == users
    # The server saw the same: one login per mailbox, not one per poll.
    assert {user: _server_logins(server, user) - before[user] for user in users} == {
        user: 1 for user in users
    }
    assert r.records() == 3


def test_an_unchanged_folder_costs_one_command_and_new_mail_is_still_seen(
    server: Dovecot, rig: Any
) -> None:
    r = rig(["kept0"])
    server.deliver("kept0", make_message(message_id="<one@acme.com>"))
    assert all(report.ok for report in r.poll())
    first = r.commands.take()
    assert "EXAMINE" in first and "UID FETCH" in first
    for _ in range(3):
        assert all(report.ok for report in r.poll())
        # INBOX is asked with STATUS (not selected), Sent, left selected by the first
        # poll, with EXAMINE: one command each, and nothing else (no LOGIN, LIST, NOOP).
        assert sorted(r.commands.take()) == ["EXAMINE", "STATUS"]
    # A message delivered now is seen on the kept connection at the next poll.
    server.deliver("kept0", make_message(message_id="<two@acme.com>"))
    (report,) = r.poll()
    assert report.ok and report.total("captured") == 1
    assert r.records() == 2 and r.commands.logins == 1
    # A flag change (the owner read a message) moves HIGHESTMODSEQ but not UIDNEXT.
    session = ImapSession.open(r.config.mailbox[0], lambda: USERS["kept0"], max_bytes=1000)
    with session:
        session._client.select_folder("INBOX")
        session._client.add_flags(session._client.search(["ALL"]), [b"\\Seen"])
    r.commands.take()
    (report,) = r.poll()
    assert report.ok and report.total("captured") == 0 and r.records() == 2
    assert len(r.commands.take()) == 2  # still one command a folder


def test_a_tls_session_is_kept_too(server: Dovecot, rig: Any) -> None:
    r = rig(["kept1"], tls=True)
    for n in range(3):
        server.deliver("kept1", make_message(message_id=f"<tls{n}@acme.com>"))
        (report,) = r.poll()
        assert report.ok and report.total("captured") == 1
    assert r.logins() == 1 and r.records() == 3


def test_a_dovecot_restart_between_polls_costs_no_failed_poll(server: Dovecot, rig: Any) -> None:
    r = rig(["kept1"])
    assert all(report.ok for report in r.poll())
    server.stop()
    server.deliver("kept1", make_message(message_id="<while-down@acme.com>"))
    server.start()
    (report,) = r.poll()
    assert report.ok and report.total("captured") == 1
    assert r.logins() == 2 and r.logins("transient") == 0
    with r.engine.connect() as conn:
        assert state.get_cursor(conn, "kept1", "INBOX") is not None
    assert r.sessions.kept() == ["kept1"]


def test_a_kicked_connection_is_replaced_within_the_same_poll(
    server: Dovecot, rig: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = rig(["kept2"])
    assert all(report.ok for report in r.poll())
    kick = ["doveadm", "-c", str(server.root / "dovecot.conf"), "kick", "kept2"]
    subprocess.run(kick, check=True, capture_output=True)
    server.deliver("kept2", make_message(message_id="<after-kick@acme.com>"))
    (report,) = r.poll()  # found gone before use (the server said BYE and closed)
    assert report.ok and report.total("captured") == 1 and r.logins() == 2

    # A connection that died in silence passes the local check: its first command fails,
    # and the command runs again on a fresh login, still within the poll.
    subprocess.run(kick, check=True, capture_output=True)
    monkeypatch.setattr(ImapSession, "looks_alive", lambda self: True)
    server.deliver("kept2", make_message(message_id="<after-kick-2@acme.com>"))
    (report,) = r.poll()
    assert report.ok and report.error is None and report.total("captured") == 1
    assert r.logins() == 3 and r.records() == 2
    with r.engine.connect() as conn:
        row = conn.execute(
            select(func.count()).select_from(provenance).where(provenance.c.mailbox == "kept2")
        ).scalar()
    assert row == 2


def test_unused_sessions_are_logged_out_after_the_idle_timeout(server: Dovecot, rig: Any) -> None:
    r = rig(["kept0", "kept1"], connection_idle_timeout=1)
    pattern = r"imap\(kept[01]\).*Disconnected: Logged out"
    before = len(re.findall(pattern, (server.root / "dovecot.log").read_text()))
    assert all(report.ok for report in r.poll())
    assert len(r.sessions) == 2 and r.sessions.expire() == 0
    time.sleep(1.2)
    assert r.sessions.expire() == 2 and len(r.sessions) == 0
    # A polite LOGOUT each, as the server's log shows.
    assert _wait_log(server, pattern, before + 2) == before + 2
    assert all(report.ok for report in r.poll())
    assert r.logins() == 4


def test_sessions_are_bounded_and_discarded_on_request(server: Dovecot, rig: Any) -> None:
    r = rig(["kept0", "kept1", "kept2"], keep_connections=2)
    assert all(report.ok for report in r.poll())
    assert r.sessions.kept() == ["kept1", "kept2"]  # the least recently used went
    r.sessions.discard("kept1")
    assert r.sessions.kept() == ["kept2"]
    r.sessions.discard_source(("calendar", "kept2"))  # a calendar of the same name holds none
    assert r.sessions.kept() == ["kept2"]
    r.sessions.close_all()
    assert r.sessions.kept() == []
    assert all(report.ok for report in r.poll())  # after close_all nothing is kept any more
    assert r.sessions.kept() == [] and r.logins() == 6


def test_a_uidvalidity_change_on_a_kept_connection_takes_the_reset_path(
    server: Dovecot, rig: Any
) -> None:
    r = rig(["kept3"])
    server.deliver("kept3", make_message(message_id="<a@acme.com>"))
    server.deliver("kept3", make_message(message_id="<b@acme.com>"))
    assert all(report.ok for report in r.poll())
    with r.engine.connect() as conn:
        old = state.get_cursor(conn, "kept3", "INBOX")
    assert old is not None and old.last_uid == 2
    server.reset_uidvalidity("kept3")
    time.sleep(1.1)  # Dovecot's UIDVALIDITY is a timestamp: the new one must differ
    server.reset_uidvalidity("kept3")
    server.deliver("kept3", make_message(message_id="<c@acme.com>"))
    # Dovecot may answer the kept connection "Mailbox was deleted under us": the STATUS
    # then runs again on a fresh login, which sees the new UIDVALIDITY.
    (report,) = r.poll()
    assert report.ok and r.logins() <= 2
    with r.engine.connect() as conn:
        new = state.get_cursor(conn, "kept3", "INBOX")
        attached = conn.execute(
            select(provenance.c.uidvalidity).where(
                provenance.c.mailbox == "kept3", provenance.c.folder == "INBOX"
            )
        ).scalars()
        validities = set(attached)
    assert new is not None and new.uidvalidity != old.uidvalidity and new.last_uid == 3
    assert validities == {new.uidvalidity}  # old UIDs dropped, messages re-attached
    assert r.records() == 3  # nothing captured twice


def test_a_folder_that_does_not_exist_costs_no_login_per_poll(server: Dovecot, rig: Any) -> None:
    r = rig(["kept0"], folders=("INBOX", "Nope", "Sent"))
    for _ in range(3):
        (report,) = r.poll()
        assert [p.place for p in report.places if p.error] == ["Nope"]
    # The server's NO for the folder is its answer on any connection, not a sign that the
    # kept one went stale: one login for the three polls.
    assert r.logins() == 1 and r.sessions.kept() == ["kept0"]
    # The owner creates the folder: the kept connection sees it at the next poll.
    with ImapSession.open(r.config.mailbox[0], lambda: USERS["kept0"], max_bytes=1000) as other:
        other._client.create_folder("Nope")
    server.deliver("kept0", make_message(message_id="<in-nope@acme.com>"), folder="Nope")
    (report,) = r.poll()
    assert report.ok and report.total("captured") == 1 and r.logins() == 1
    with ImapSession.open(r.config.mailbox[0], lambda: USERS["kept0"], max_bytes=1000) as other:
        other._client.delete_folder("Nope")  # the next tests of this module expect none


def test_the_open_folder_rebuilt_under_a_kept_connection_costs_no_failed_poll(
    server: Dovecot, rig: Any
) -> None:
    r = rig(["kept3"])
    server.deliver("kept3", make_message(message_id="<sent-a@acme.com>"), folder="Sent")
    assert all(report.ok for report in r.poll())  # leaves Sent open on the kept connection
    server.reset_uidvalidity("kept3", "Sent")
    time.sleep(1.1)  # Dovecot's UIDVALIDITY is a timestamp: the new one must differ
    server.reset_uidvalidity("kept3", "Sent")
    server.deliver("kept3", make_message(message_id="<sent-b@acme.com>"), folder="Sent")
    # Dovecot answers EXAMINE of the rebuilt open folder "Mailbox was deleted under us":
    # the command runs again on a fresh login, which sees the new folder.
    (report,) = r.poll()
    assert report.ok and r.logins() == 2 and r.records() == 2


def test_a_cache_that_keeps_nothing_logs_in_every_poll(server: Dovecot, rig: Any) -> None:
    r = rig(["kept0"], keep_connections=0)
    for _ in range(3):
        assert all(report.ok for report in r.poll())
    assert r.logins() == 3 and len(r.sessions) == 0


def test_a_refused_login_is_counted_by_outcome(server: Dovecot, tmp_path: Path) -> None:
    box = MailboxConfig(
        name="kept0",
        owner="kept0@example.com",
        host="127.0.0.1",
        port=server.port,
        security="plain",
        username="kept0",
        password="wrong",  # type: ignore[arg-type]
    )
    seen: list[str] = []
    cache = SessionCache(open_imap, capacity=10, idle_timeout=60, on_login=seen.append)
    with pytest.raises(Exception, match="refused the login"):
        cache.open(box, 1000)
    assert seen == ["credentials"] and len(cache) == 0


@pytest.mark.daemon
def test_the_daemon_keeps_sessions_and_logs_them_out_when_it_stops(
    server: Dovecot, tmp_path: Path
) -> None:
    users = ["kept0", "kept1", "kept2"]
    Rig(server, tmp_path, users).close()  # empties their mailboxes
    port = free_port()
    boxes = "".join(
        f'[[mailbox]]\nname = "{u}"\nowner = "{u}@example.com"\nhost = "127.0.0.1"\n'
        f'port = {server.port}\nsecurity = "plain"\nusername = "{u}"\n'
        f'password = "{USERS[u]}"\nfolders = ["INBOX"]\n'
        for u in users
    )
    config = tmp_path / "syncd.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "daemon.db"}"\n'
        '[organization]\ninternal_domains = ["example.com"]\n'
        "[sync]\ninterval = 1\njitter = 0\nidle = false\n"
        f'[metrics]\nlisten = "127.0.0.1:{port}"\n' + boxes
    )
    before = {u: _server_logins(server, u) for u in users}
    logged_out = r"imap\(kept[012]\).*Disconnected: Logged out"
    outs = len(re.findall(logged_out, (server.root / "dovecot.log").read_text()))
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    try:

        def metric(name: str) -> float:
            url = f"http://127.0.0.1:{port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
            found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
            return float(found.group(1)) if found else 0.0

        # Each mailbox polled about once a second: wait for 5 polls of each.
        wait_until(
            lambda: metric("syncd_imap_sessions_reused_total") >= 12, 30, "kept sessions reused"
        )
        server.deliver("kept1", make_message(message_id="<daemon@acme.com>"))
        engine = database.open_database(f"sqlite:///{tmp_path / 'daemon.db'}")
        try:

            def captured() -> bool:
                with engine.connect() as conn:
                    return bool(conn.scalar(select(func.count()).select_from(records)))

            wait_until(captured, 30, "the message on a kept connection")
        finally:
            engine.dispose()
        assert metric('syncd_imap_logins_total{outcome="ok"}') == 3
        assert {u: _server_logins(server, u) - before[u] for u in users} == {u: 1 for u in users}
        code, took = daemon.stop()
        assert code == 0 and took < 10
    finally:
        daemon.close()
    # Shutdown says LOGOUT on every kept session.
    assert _wait_log(server, logged_out, outs + 3) == outs + 3


def _connections_to(pid: int, port: int) -> int:
    """Established TCP connections that process ``pid`` holds to ``port`` on loopback."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    count = 0
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].rsplit(":", 1)[1], 16)
        if remote_port == port and fields[3] == "01" and fields[9] in inodes:
            count += 1
    return count


@pytest.mark.daemon
def test_with_idle_on_each_mailbox_holds_one_connection_not_two(
    server: Dovecot, tmp_path: Path
) -> None:
    """The IDLE watcher's connection is the mailbox's kept one: polls of a watched mailbox
    borrow it (out of IDLE for the poll, back in after), so N mailboxes cost the server N
    connections, not 2 x N, and one login each, not one a poll."""
    users = ["kept0", "kept1", "kept2"]
    Rig(server, tmp_path, users).close()  # empties their mailboxes
    port = free_port()
    boxes = "".join(
        f'[[mailbox]]\nname = "{u}"\nowner = "{u}@example.com"\nhost = "127.0.0.1"\n'
        f'port = {server.port}\nsecurity = "plain"\nusername = "{u}"\n'
        f'password = "{USERS[u]}"\nfolders = ["INBOX"]\n'
        for u in users
    )
    config = tmp_path / "syncd.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "daemon.db"}"\n'
        '[organization]\ninternal_domains = ["example.com"]\n'
        "[sync]\ninterval = 1\njitter = 0\nidle = true\n"
        f'[metrics]\nlisten = "127.0.0.1:{port}"\n' + boxes
    )
    before = {u: _server_logins(server, u) for u in users}
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    try:
        assert daemon.proc is not None
        pid = daemon.proc.pid

        def metric(name: str) -> float:
            url = f"http://127.0.0.1:{port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
            found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
            return float(found.group(1)) if found else 0.0

        def polls() -> float:
            ok = metric('syncd_imap_logins_total{outcome="ok"}')
            return ok + metric("syncd_imap_sessions_reused_total")

        # Four polls of each mailbox (the watchers' three logins count too), and the three
        # watchers in IDLE.
        wait_until(lambda: polls() >= 15, 30, "four polls of each mailbox")
        wait_until(lambda: _connections_to(pid, server.port) >= 3, 10, "the IDLE watchers")
        # Polls and IDLE share each mailbox's one connection: never a second one.
        seen = []
        for _ in range(20):
            seen.append(_connections_to(pid, server.port))
            time.sleep(0.1)
        assert set(seen) == {3}, seen
        # The first poll may come before its watcher is in IDLE and log in; from then on,
        # polls cost no login.
        logins = {u: _server_logins(server, u) for u in users}
        reused = metric("syncd_imap_sessions_reused_total")
        wait_until(
            lambda: metric("syncd_imap_sessions_reused_total") >= reused + 9,
            30,
            "three more polls of each mailbox",
        )
        assert {u: _server_logins(server, u) for u in users} == logins
        # Every login the server saw is in the metric, the watchers' as well as the polls'
        # (a poll may be between the server's log line and its count: wait for a quiet moment).
        wait_until(
            lambda: (
                metric('syncd_imap_logins_total{outcome="ok"}')
                == sum(_server_logins(server, u) - before[u] for u in users)
            ),
            10,
            "the metric to count the server's logins",
        )
        # Push still works: a message is captured at once on the watcher's wake-up.
        server.deliver("kept2", make_message(message_id="<watched@acme.com>"))
        engine = database.open_database(f"sqlite:///{tmp_path / 'daemon.db'}")
        try:

            def captured() -> bool:
                with engine.connect() as conn:
                    return bool(conn.scalar(select(func.count()).select_from(records)))

            wait_until(captured, 30, "the message on a watched mailbox")
        finally:
            engine.dispose()
        code, _took = daemon.stop()
        assert code == 0
    finally:
        daemon.close()


def test_a_kept_session_on_a_high_file_descriptor_still_looks_alive(
    server: Dovecot, rig: Any
) -> None:
    """Thousands of mailboxes mean socket numbers past 1,024, where select() gives up
    (FD_SETSIZE): the local check must not call every such session dead."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2048), hard))
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1030)]
    try:
        r = rig(["kept1"])
        # Another thread of this worker (an earlier test's logout) may have freed a low
        # descriptor meanwhile, which the login's socket would take: fill every hole first.
        while (fd := os.open(os.devnull, os.O_RDONLY)) < 1024:
            filler.append(fd)
        filler.append(fd)
        assert all(report.ok for report in r.poll())
        session = r.sessions._idle["kept1"].session
        assert isinstance(session, ImapSession) and session._client.socket().fileno() >= 1024
        assert session.looks_alive()
        assert all(report.ok for report in r.poll())
        assert r.logins() == 1  # the second poll used the kept session
    finally:
        for fd in filler:
            os.close(fd)


@pytest.mark.parametrize("tls", [False, True])
def test_a_kept_connection_sends_tcp_keepalives_before_nat_timeouts(
    server: Dovecot, rig: Any, tls: bool
) -> None:
    """A kept connection idles a whole interval (300 s by default) between polls; NAT
    gateways and cloud load balancers drop idle flows silently after 4 to 6 minutes, and
    the next STATUS would then wait the whole timeout before the fresh login.  TCP
    keepalives every minute keep the flow known, and a peer gone for good turns the socket
    into an error that the local check sees before any command is sent."""
    r = rig(["kept2"], tls=tls)
    assert all(report.ok for report in r.poll())
    session = r.sessions._idle["kept2"].session
    assert isinstance(session, ImapSession)
    sock = session._client.socket()
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    idle = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
    interval = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL)
    count = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)
    assert idle <= 60 and idle + interval * count <= 240  # a dead peer known within 4 min
