"""IMAP NOTIFY (RFC 5465) against a real Dovecot (issue #20): mail put into Sent wakes the
mailbox as INBOX's does, and a poll asks the server nothing about a folder the watch has
covered since the cursors were read.  Anything that puts the cover in doubt (a watch lost
or logged in anew, keep_connections = 0, NOTIFY refused or not offered, mail written past
the server) falls back to STATUS, as without NOTIFY."""

from __future__ import annotations

import imaplib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient
from sqlalchemy import Engine
from structlog.testing import capture_logs

from syncd.config_file import load_config
from syncd.connectors.imap_idle import IdleConnection
from syncd.connectors.imap_notify import Notified
from syncd.domain.matching import Directory
from syncd.engine.daemon import Daemon
from syncd.engine.imap.idle_hub import IdleHub, Watch
from syncd.engine.imap.mail_sync import open_imap
from syncd.engine.imap.sessions import DaemonSessions
from syncd.engine.sources import MailboxSource
from syncd.metrics import Metrics
from syncd.store.database import open_database
from syncd.store.directory import load_directory
from tests.conftest import LOGINS, World
from tests.daemon import wait_until
from tests.mail import make_message
from tests.servers.dovecot import WITHOUT_NOTIFY, Dovecot

pytestmark = pytest.mark.dovecot

FOLDERS = ["INBOX", "Sent"]


class Commands:
    """Every command imaplib sends (polls, lent connections), by name; the watch's own
    IDLE, DONE and NOTIFY go past imaplib."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[str] = []
        real = imaplib.IMAP4.send

        def send(imap: imaplib.IMAP4, data: bytes) -> None:
            words = data.split(b" ", 2)
            if len(words) > 1 and words[0].startswith(imap.tagpre):
                self.sent.append(words[1].decode().upper())
            real(imap, data)

        monkeypatch.setattr(imaplib.IMAP4, "send", send)

    def take(self) -> list[str]:
        out, self.sent = self.sent, []
        return out


class Rig:
    def __init__(self, world: World, hub: IdleHub) -> None:
        self.world = world
        self.login = world.rep("alice")
        # Sent exists before the watch asks about it (Dovecot's auto-create announces it).
        world.dovecot.maildir(self.login, "Sent")
        config = load_config(world.write_config(mailbox={"alice": {"folders": FOLDERS}}))
        self.engine: Engine = open_database(config.database.url)
        self.sessions = DaemonSessions(config.sync, Metrics(), open_imap)
        self.source = MailboxSource(self.engine, config, config.mailbox[0], self.sessions)
        self.hub = hub
        self.news: list[str] = []
        self.watch: Watch | None = None

    def start_watch(self) -> Watch:
        self.watch = self.hub.watch(self.source.config, self.news.append)
        self.sessions.watch("alice", self.watch)
        wait_until(lambda: self.watch is not None and self.watch.state == "idle", 10, "IDLE")
        return self.watch

    def directory(self) -> Directory:
        with self.engine.connect() as conn:
            return load_directory(conn, self.source._config.capture)

    def append(self, folder: str, message_id: str) -> None:
        """As a mail client files what it sent: APPEND, through the server."""
        with IMAPClient("127.0.0.1", port=self.world.dovecot.port, ssl=False) as client:
            client.login(self.login, self.world.passwords["alice"])
            client.append(folder, make_message(message_id=message_id))

    def expunge_all(self, folder: str) -> None:
        with IMAPClient("127.0.0.1", port=self.world.dovecot.port, ssl=False) as client:
            client.login(self.login, self.world.passwords["alice"])
            client.select_folder(folder)
            client.delete_messages(client.search())
            client.expunge()

    def close(self) -> None:
        self.hub.close()
        self.sessions.close_all()
        self.engine.dispose()


@pytest.fixture
def rig(world: World) -> Iterator[Rig]:
    made = Rig(world, IdleHub())
    yield made
    made.close()


def _idle_again(watch: Watch) -> None:
    wait_until(lambda: watch.state == "idle", 10, "the watch back in IDLE")


def test_mail_filed_in_sent_wakes_the_mailbox_within_seconds(rig: Rig) -> None:
    watch = rig.start_watch()
    assert set(watch.folders_covered_since()) == {"INBOX", "Sent"}
    assert rig.source.sync(rig.directory()).ok
    rig.append("Sent", "<sent@acme.com>")
    took = wait_until(lambda: rig.news == ["alice"], 10, "the watch's report of Sent")
    assert took < 3.0, took  # no poll interval passed: the server said so (about 1 s here)
    assert rig.source.sync(rig.directory()).total("captured") == 1
    _idle_again(watch)
    # The pass on the lent connection read Sent past that message: no second report.
    # An expunge in Sent is nothing to capture: no report either.
    rig.expunge_all("Sent")
    rig.append("INBOX", "<inbox@acme.com>")  # a report that comes after the expunge's
    wait_until(lambda: len(rig.news) == 2, 10, "INBOX's report")
    assert rig.news == ["alice", "alice"]


def test_a_poll_under_notify_sends_no_command_at_all(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = Commands(monkeypatch)
    watch = rig.start_watch()
    assert rig.source.sync(rig.directory()).ok  # begun after NOTIFY covered Sent
    commands.take()
    connection = watch.connection
    for _ in range(3):
        assert rig.source.unchanged() == FOLDERS
    assert commands.take() == []  # no STATUS, no EXAMINE, no login: nothing
    assert watch.state == "idle" and watch.connection is connection
    assert rig.sessions.logins == 0 and rig.news == []
    # Mail in Sent while a poll holds the connection (NOTIFY is off for it) and does not
    # read Sent: reported once the connection is given back.
    session = rig.sessions.open(rig.source.config, 1000)
    session.status("INBOX")
    rig.append("Sent", "<while-lent@acme.com>")
    session.close()
    wait_until(lambda: rig.news == ["alice"], 10, "the report after the poll")
    # Read by the poll, it is no news: the poll has it.
    _idle_again(watch)
    session = rig.sessions.open(rig.source.config, 1000)
    rig.append("Sent", "<read-by-the-poll@acme.com>")
    session.status("Sent")
    session.close()
    rig.append("INBOX", "<after@acme.com>")
    wait_until(lambda: len(rig.news) == 2, 10, "INBOX's report")
    assert rig.news == ["alice", "alice"]


def test_a_watch_that_covered_sent_only_after_the_pass_read_it_is_asked_once(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A NOTIFY SET later than the cursors covers nothing: mail between the two is only
    seen by asking.  So are a lost watch, and keep_connections = 0."""
    commands = Commands(monkeypatch)
    assert rig.source.sync(rig.directory()).ok
    watch = rig.start_watch()  # after the pass read INBOX and Sent
    commands.take()
    assert rig.source.unchanged() == FOLDERS
    # Both asked (INBOX, open on the watch's connection, by EXAMINE); INBOX again for IDLE.
    assert commands.take() == ["EXAMINE", "STATUS", "EXAMINE"]
    _idle_again(watch)
    assert rig.source.unchanged() == FOLDERS
    assert commands.take() == []  # confirmed after NOTIFY began: covered now
    rig.sessions.resize(0)  # keep_connections = 0: a login at every poll, as asked
    assert rig.source.unchanged() == FOLDERS
    sent = commands.take()
    assert "LOGIN" in sent and sent.count("STATUS") == 2
    rig.sessions.resize(10)
    watch.stop()  # a watch lost: nothing is covered
    wait_until(lambda: not watch.alive, 10, "the watch to end")
    assert rig.sessions.covered_folders("alice") == frozenset()
    assert rig.source.unchanged() == FOLDERS
    assert "STATUS" in commands.take()


def test_mail_written_past_the_server_is_found_at_the_next_renewal(world: World) -> None:
    """A message written straight into Sent's Maildir is announced by no one: the renewal's
    NOTIFY SET asks each folder's STATUS again and reports it."""
    made = Rig(world, IdleHub(renew_every=0.5))
    try:
        watch = made.start_watch()
        assert made.source.sync(made.directory()).ok
        world.deliver("alice", make_message(message_id="<behind@acme.com>"), folder="Sent")
        wait_until(lambda: made.news == ["alice"], 10, "the renewal's report")
        assert watch.renewals >= 1
        assert made.source.sync(made.directory()).total("captured") == 1
    finally:
        made.close()


def _polled_as_without_notify(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Today's behaviour: INBOX covered by IDLE alone, Sent asked by STATUS at every poll,
    and mail filed there found by that STATUS, not announced."""
    made = Rig(world, IdleHub())
    try:
        commands = Commands(monkeypatch)
        watch = made.start_watch()
        assert set(watch.folders_covered_since()) == {"INBOX"}
        assert made.source.sync(made.directory()).ok
        commands.take()
        assert made.source.unchanged() == FOLDERS
        assert commands.take() == ["STATUS", "EXAMINE"]  # Sent asked, INBOX again for IDLE
        made.append("Sent", "<unannounced@acme.com>")
        assert made.source.unchanged() is None  # found by the poll's STATUS, as before
        made.append("INBOX", "<pushed@acme.com>")  # IDLE's report: the only one
        wait_until(lambda: made.news == ["alice"], 10, "IDLE's report")
    finally:
        made.close()


def test_a_refused_notify_leaves_the_watch_as_it_was_without_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Notified, "set_command", lambda _self: b"NOTIFY SET (nonsense)")
    _polled_as_without_notify(world, monkeypatch)


@pytest.fixture(scope="module")
def plain_dovecot() -> Iterator[Dovecot]:
    root = Path(tempfile.mkdtemp(prefix="syncd-test-notify-"))
    users = {f"user{n}": f"pw-user{n}-s3cr3t" for n in range(LOGINS)}
    server = Dovecot(root, users, capabilities=WITHOUT_NOTIFY).start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_a_server_without_notify_is_polled_as_before(
    plain_dovecot: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World(plain_dovecot, tmp_path, f"sqlite:///{tmp_path / 'syncd.db'}")
    _polled_as_without_notify(world, monkeypatch)


def test_a_poll_between_notify_set_sent_and_run_is_not_covered(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Covered from the NOTIFY SET's answer, not from its sending: a pass that reads Sent
    just before the server runs the SET, and a message filed between the two, is in the
    SET's own STATUS answer and no event ever tells; only asking finds it."""
    real = IdleConnection._command
    race: list[str] = []  # what to do at the next NOTIFY SET

    def command(self: IdleConnection, tag: bytes, command: bytes, **kwargs: Any) -> bool:
        if command.startswith(b"NOTIFY SET") and race:
            what = race.pop()
            if what == "pass":  # a whole pass in the gap (the watch is logging in)
                assert rig.source.sync(rig.directory()).ok
            rig.append("Sent", f"<in-the-gap-{what}@acme.com>")
        return real(self, tag, command, **kwargs)

    monkeypatch.setattr(IdleConnection, "_command", command)
    race.append("pass")
    watch = rig.start_watch()
    assert set(watch.folders_covered_since()) == {"INBOX", "Sent"}
    assert rig.news == []
    assert rig.source.unchanged() is None  # asked, and found: the pass runs
    assert rig.source.sync(rig.directory()).total("captured") == 1
    _idle_again(watch)
    assert rig.news == []
    # A first cover at a give-back (this one's lost meanwhile, as after a LIST): the poll on
    # the lent connection read Sent, a message filed before the NOTIFY SET ran is in its
    # answer and no event will follow; compared with what the poll read, it is news now.
    connection = watch.connection
    assert connection is not None and connection._notified is not None
    connection._notified.covered = {}
    session = rig.sessions.open(rig.source.config, 1000)  # lent: NOTIFY off
    session.status("Sent")
    race.append("give-back")
    session.close()
    assert rig.news == ["alice"]
    assert rig.source.sync(rig.directory()).total("captured") == 1


def test_a_notify_set_answer_for_a_folder_not_captured_wakes_nothing(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that answers a NOTIFY SET with a folder not asked for (here: asked, behind
    the connection's back): that folder is not covered, and no give-back wakes a pass for it,
    which would give back and wake the next, endlessly."""
    rig.world.dovecot.maildir(rig.login, "Drafts")
    real = Notified.set_command

    def set_command(self: Notified) -> bytes:
        return real(self).replace(b'("Sent")', b'("Sent" "Drafts")')

    monkeypatch.setattr(Notified, "set_command", set_command)
    watch = rig.start_watch()
    assert set(watch.folders_covered_since()) == {"INBOX", "Sent"}
    for _ in range(3):
        assert rig.source.sync(rig.directory()).ok  # on the lent connection, given back
        _idle_again(watch)
    assert rig.news == []
    assert set(watch.folders_covered_since()) == {"INBOX", "Sent"}
    rig.append("Sent", "<still-announced@acme.com>")
    wait_until(lambda: rig.news == ["alice"], 10, "the watch's report of Sent")


def test_a_renewal_that_finds_unannounced_mail_ends_the_cover(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Something writes into Sent past the server (a bcc copy delivered into the Maildir,
    a sync tool): once a renewal finds such mail, the connection's polls ask STATUS again,
    so the next such message is found within one poll, not one renewal."""
    made = Rig(world, IdleHub(renew_every=0.5))
    try:
        watch = made.start_watch()
        assert made.source.sync(made.directory()).ok
        with capture_logs() as logs:
            world.deliver("alice", make_message(message_id="<behind@acme.com>"), folder="Sent")
            wait_until(lambda: made.news == ["alice"], 10, "the renewal's report")
            assert made.source.sync(made.directory()).total("captured") == 1
            assert made.sessions.covered_folders("alice") <= {"INBOX"}
            then = watch.renewals
            wait_until(lambda: watch.renewals >= then + 2, 10, "more renewals")  # said once
        said = [e for e in logs if e["event"] == "notify.untrusted"]
        assert said == [{"event": "notify.untrusted", "log_level": "info", "mailbox": "alice"}]
        assert watch.alive and watch.connection is not None
        commands = Commands(monkeypatch)
        world.deliver("alice", make_message(message_id="<again@acme.com>"), folder="Sent")
        assert made.source.unchanged() is None  # found by its STATUS, at once
        assert "STATUS" in commands.take()
        assert made.source.sync(made.directory()).total("captured") == 1
    finally:
        made.close()


@pytest.mark.parametrize("notify", [True, False])
def test_the_daemon_asks_for_notify_as_configured(world: World, notify: bool) -> None:
    """``[sync] notify = false``: the daemon's watches hold INBOX in IDLE and cover nothing
    else, so every poll asks Sent's STATUS (mail written there past the server is found
    within one interval)."""
    world.rep("alice")
    world.dovecot.maildir(world.logins["alice"], "Sent")
    extra = "" if notify else "[sync]\nnotify = false\n"
    path = world.write_config(mailbox={"alice": {"folders": FOLDERS}}, extra=extra)
    daemon = Daemon(path)
    hub = daemon._imap.hub
    try:
        watch = hub.watch(load_config(path).mailbox[0], lambda _name: None)
        wait_until(lambda: watch.state == "idle", 10, "IDLE")
        assert set(watch.folders_covered_since()) == ({"INBOX", "Sent"} if notify else {"INBOX"})
    finally:
        hub.close()
