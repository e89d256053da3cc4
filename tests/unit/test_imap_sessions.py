"""The session cache's rules, over the fake mail server: check-out/in, bounds, expiry,
discards, and the one retry a reused connection gets."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from syncd.config import MailboxConfig, SyncConfig
from syncd.connectors.base import MailSession
from syncd.engine.imap.sessions import DaemonSessions, SessionCache
from syncd.errors import CredentialsError, RemoteConfigError, TransientError
from syncd.metrics import Metrics
from tests.fakes import FakeMailServer, FakeMailSession


def _box(name: str, **changes: object) -> MailboxConfig:
    keys: dict[str, object] = {
        "name": name,
        "owner": f"{name}@example.com",
        "host": "127.0.0.1",
        "port": 143,
        "security": "plain",
        "username": name,
        "password": "pw",
        **changes,
    }
    return MailboxConfig.from_dict(keys)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Rig:
    def __init__(self, capacity: int = 10, idle_timeout: float = 60.0) -> None:
        self.server = FakeMailServer()
        self.server.make_folder("INBOX")
        self.opened: list[FakeMailSession] = []
        self.outcomes: list[str] = []
        self.clock = Clock()
        self.cache = SessionCache(
            self.opener,
            capacity=capacity,
            idle_timeout=idle_timeout,
            on_login=self.outcomes.append,
            clock=self.clock,
        )

    def opener(self, box: MailboxConfig, max_bytes: int) -> MailSession:
        session = self.server.session(box, max_bytes)
        self.opened.append(session)
        return session

    def poll(self, name: str, **changes: object) -> None:
        session = self.cache.open(_box(name, **changes), 1000)
        try:
            session.status("INBOX")
        finally:
            session.close()


def test_a_session_is_checked_in_and_reused() -> None:
    rig = Rig()
    for _ in range(3):
        rig.poll("a")
    assert rig.server.logins == 1 and rig.cache.reused == 2 and rig.outcomes == ["ok"]
    assert rig.cache.kept() == ["a"] and not rig.opened[0].closed


def test_the_least_recently_used_sessions_are_closed_beyond_the_capacity() -> None:
    rig = Rig(capacity=2)
    for name in ("a", "b", "c"):
        rig.poll(name)
    assert rig.cache.kept() == ["b", "c"] and rig.opened[0].closed
    rig.poll("b")  # now the most recently used
    rig.poll("d")
    assert rig.cache.kept() == ["b", "d"]


def test_unused_sessions_expire() -> None:
    rig = Rig(idle_timeout=60)
    rig.poll("a")
    rig.clock.now += 30
    rig.poll("b")
    rig.clock.now += 31
    assert rig.cache.expire() == 1 and rig.cache.kept() == ["b"]


def test_a_reused_connection_that_died_is_replaced_within_the_poll() -> None:
    rig = Rig()
    rig.poll("a")
    rig.server.fail_next("status", TransientError("connection lost (abort)"))
    rig.poll("a")  # no error: the STATUS ran again on a fresh login
    assert rig.server.logins == 2 and rig.opened[0].closed and rig.cache.kept() == ["a"]


def test_a_fresh_connection_fails_as_before_and_is_not_kept() -> None:
    rig = Rig()
    rig.server.fail_next("status", TransientError("connection lost (abort)"))
    with pytest.raises(TransientError):
        rig.poll("a")
    assert rig.server.logins == 1 and rig.cache.kept() == [] and rig.opened[0].closed


def test_a_failure_in_the_middle_of_a_poll_is_not_retried_and_not_kept() -> None:
    rig = Rig()
    rig.poll("a")
    rig.server.fail_next("uids_from", TransientError("connection lost (abort)"))
    session = rig.cache.open(_box("a"), 1000)
    session.examine("INBOX")
    with pytest.raises(TransientError):
        session.uids_from(1)  # needs the selected folder: a fresh login could not go on
    session.close()
    assert rig.server.logins == 1 and rig.cache.kept() == []


def test_a_folder_the_server_refuses_leaves_the_session_kept() -> None:
    rig = Rig()
    session = rig.cache.open(_box("a"), 1000)
    with pytest.raises(RemoteConfigError):
        session.status("Nope")
    session.close()
    assert rig.cache.kept() == ["a"]


def test_a_refused_fresh_login_is_reported_by_kind() -> None:
    rig = Rig()
    rig.poll("a")
    rig.server.fail_next("status", TransientError("connection lost (abort)"))
    rig.server.fail_next("login", CredentialsError("the server refused the login"))
    with pytest.raises(CredentialsError):
        rig.poll("a")
    assert rig.outcomes == ["ok", "credentials"] and rig.cache.kept() == []


def test_changed_settings_log_in_anew() -> None:
    rig = Rig()
    rig.poll("a")
    rig.poll("a", port=1143)
    assert rig.server.logins == 2 and rig.opened[0].closed


def test_discarded_while_out_or_after_close_all_the_session_is_closed_at_check_in() -> None:
    rig = Rig()
    session = rig.cache.open(_box("a"), 1000)
    rig.cache.discard("a")  # the lease moved, or the mailbox left the config
    session.close()
    assert rig.cache.kept() == [] and rig.opened[0].closed
    rig.poll("b")
    late = rig.cache.open(_box("c"), 1000)
    rig.cache.close_all()
    assert rig.opened[1].closed and rig.cache.kept() == []
    late.close()  # a worker that finished after shutdown began
    assert rig.opened[2].closed and rig.cache.kept() == []


def test_default_folders_are_listed_once_in_a_while() -> None:
    rig = Rig()
    rig.server.fail_next("folders", TransientError("x"), after=1)  # a second LIST fails
    for _ in range(3):
        session = rig.cache.open(_box("a"), 1000)
        assert session.default_folders() == ["INBOX", "Sent"]
        session.close()
    assert rig.server.logins == 1  # one LIST for the three polls: none failed
    rig.clock.now += 901
    session = rig.cache.open(_box("a"), 1000)
    assert session.default_folders() == ["INBOX", "Sent"]  # listed again (retried on a fresh login)
    session.close()
    assert rig.server.logins == 2


def test_nothing_is_kept_with_a_capacity_of_zero() -> None:
    rig = Rig(capacity=0)
    rig.poll("a")
    rig.poll("a")
    assert rig.server.logins == 2 and rig.cache.kept() == []


class StubWatcher:
    def __init__(self) -> None:
        self.ended: str | None = None


def test_a_watched_mailbox_keeps_no_poll_session_while_its_watcher_lives() -> None:
    rig = Rig()
    rig.poll("a")
    assert rig.cache.kept() == ["a"]
    watcher = StubWatcher()
    rig.cache.watch("a", watcher)  # its IDLE connection is the one the mailbox holds
    assert rig.cache.kept() == []
    _wait(lambda: rig.opened[0].closed)
    rig.poll("a")
    rig.poll("a")
    assert rig.server.logins == 3 and rig.cache.kept() == [] and rig.opened[2].closed
    rig.poll("b")  # other mailboxes are kept as before
    assert rig.cache.kept() == ["b"]
    watcher.ended = "no IDLE"  # gave up: the poll session is the mailbox's connection again
    rig.poll("a")
    rig.poll("a")
    assert rig.server.logins == 5 and sorted(rig.cache.kept()) == ["a", "b"]
    rig.cache.watch("a", StubWatcher())
    rig.cache.unwatch("a")
    rig.poll("a")
    assert rig.server.logins == 6 and sorted(rig.cache.kept()) == ["a", "b"]


def test_a_folder_the_server_refuses_costs_no_login_on_a_kept_session() -> None:
    """A mailbox with a folder that does not exist (a typo, a folder deleted by its owner):
    the server answers NO on a connection that is fine, every poll.  That is the folder's
    error, not a sign that the kept connection died: no fresh login for it."""
    rig = Rig()
    for _ in range(3):
        session = rig.cache.open(_box("a"), 1000)
        session.status("INBOX")
        with pytest.raises(RemoteConfigError):
            session.status("Nope")
        with pytest.raises(RemoteConfigError):
            session.examine("Nope")
        session.close()
    assert rig.server.logins == 1 and rig.cache.kept() == ["a"]


def test_a_mailbox_discarded_while_its_poll_logs_in_is_not_kept() -> None:
    """The config reload that removes a mailbox (or the lease that moves) may come while a
    worker is still logging in for it: its session must not be kept afterwards."""
    rig = Rig()
    logging_in, go_on = threading.Event(), threading.Event()
    plain = rig.opener

    def slow(box: MailboxConfig, max_bytes: int) -> MailSession:
        logging_in.set()
        assert go_on.wait(5)
        return plain(box, max_bytes)

    rig.cache._opener = slow
    worker = threading.Thread(target=rig.poll, args=("a",))
    worker.start()
    assert logging_in.wait(5)
    rig.cache.discard("a")
    go_on.set()
    worker.join(5)
    assert rig.cache.kept() == [] and rig.opened[0].closed
    rig.cache._opener = plain
    rig.poll("a")  # polled again later (re-added, or the lease came back): kept as usual
    assert rig.cache.kept() == ["a"]


def test_a_reload_that_lowers_keep_connections_closes_the_excess_at_once() -> None:
    """An admin lowers keep_connections because the server complains of too many
    connections: the reload (SIGHUP) closes the sessions beyond it, not 10 minutes later."""
    server = FakeMailServer()
    server.make_folder("INBOX")
    opened: list[FakeMailSession] = []

    def opener(box: MailboxConfig, max_bytes: int) -> MailSession:
        opened.append(server.session(box, max_bytes))
        return opened[-1]

    sync = SyncConfig(keep_connections=3)
    cache = DaemonSessions(sync, Metrics(), opener)
    for name in ("a", "b", "c"):
        session = cache.open(_box(name), 1000)
        session.status("INBOX")
        session.close()
    assert cache.kept() == ["a", "b", "c"]
    cache.tune(replace(sync, keep_connections=1))
    assert cache.kept() == ["c"]
    _wait(lambda: opened[0].closed and opened[1].closed)  # logged out on their own thread
    cache.tune(replace(sync, keep_connections=0))
    assert cache.kept() == []
    _wait(lambda: opened[2].closed)


def _wait(done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not done():
        assert time.monotonic() < deadline, "not closed within 5 s"
        time.sleep(0.01)


class SlowLogout:
    """A kept session whose LOGOUT waits for the server (a slow or far one)."""

    def __init__(self, session: MailSession) -> None:
        self._session = session
        self.release = threading.Event()
        self.released: bool | None = None  # True: LOGOUT ended because the test let it

    def __getattr__(self, name: str) -> object:
        return getattr(self._session, name)

    def close(self) -> None:
        self.released = self.release.wait(5)
        self._session.close()


@pytest.mark.parametrize("how", ["discard", "watch"])
def test_discarding_or_watching_never_waits_for_a_logout(how: str) -> None:
    """The daemon's main loop discards (a reload changed 1,000 mailboxes) and starts
    watchers with its lock held: a LOGOUT round trip each there would stall it."""
    rig = Rig()
    plain = rig.opener
    slow: list[SlowLogout] = []

    def opener(box: MailboxConfig, max_bytes: int) -> MailSession:
        slow.append(SlowLogout(plain(box, max_bytes)))
        return slow[-1]  # type: ignore[return-value]

    rig.cache._opener = opener
    rig.poll("a")
    if how == "discard":
        rig.cache.discard("a")
    else:
        rig.cache.watch("a", StubWatcher())
    assert rig.cache.kept() == []
    slow[0].release.set()  # only now may the LOGOUT end
    _wait(lambda: slow[0].released is not None)
    assert slow[0].released is True and rig.opened[0].closed


class LendingWatcher:
    """A watcher that lends its own logged-in session to polls, as engine/imap/idle_hub.py's Watch."""

    def __init__(self, session: MailSession) -> None:
        self.ended: str | None = None
        self.session = session
        self.lent = 0
        self.returned: list[tuple[bool, int | None]] = []

    def lend(self, wait: float) -> MailSession | None:
        self.lent += 1
        return self.session

    def give_back(self, usable: bool, inbox_uidnext: int | None, seen: object = None) -> None:
        self.returned.append((usable, inbox_uidnext))


def test_polls_of_a_watched_mailbox_borrow_the_watchers_connection() -> None:
    """No login a poll; a NO the lent connection answered (a server that refuses STATUS of a
    folder) sends it back into IDLE, not to a new login, and the poll retries once on its
    own login as for any kept connection; a connection that broke goes back unusable."""
    rig = Rig()
    rig.server.make_folder("Archive")
    watcher = LendingWatcher(rig.opener(_box("a"), 1000))
    rig.cache.watch("a", watcher)
    for _ in range(3):
        rig.poll("a")
    assert rig.server.logins == 1 and watcher.lent == 3  # the watcher's own login only
    assert [usable for usable, _ in watcher.returned] == [True, True, True]
    assert all(uidnext is not None for _, uidnext in watcher.returned)

    rig.server.fail_next("status", RemoteConfigError("STATUS refused here"))
    session = rig.cache.open(_box("a"), 1000)
    session.status("Archive")  # refused on the lent one, answered on a fresh login
    session.close()
    assert watcher.returned[-1][0] is True  # its connection is fine: back into IDLE
    assert rig.server.logins == 2 and rig.opened[-1].closed  # the poll's own, not kept

    rig.server.fail_next("status", TransientError("connection reset"))
    session = rig.cache.open(_box("a"), 1000)
    session.status("INBOX")
    session.close()
    assert watcher.returned[-1] == (False, None)  # broken: the watcher logs in anew
    assert rig.server.logins == 3


class CoveringWatcher:
    """A watch that has held INBOX in IDLE since ``since`` (None: no connection now)."""

    def __init__(self, since: float | None) -> None:
        self.ended: str | None = None
        self.since = since

    def inbox_covered_since(self) -> float | None:
        return self.since


def test_inbox_is_covered_only_by_a_watch_in_idle_since_before_the_cursors_were_read() -> None:
    from syncd.store.state import Cursor

    cache = Rig().cache
    cursors = {"INBOX": Cursor(7, 10, None)}
    watcher = CoveringWatcher(since=100.0)
    cache.watch("a", watcher)
    assert not cache.inbox_covered("a")  # no clean pass yet
    cache.remember_cursors("a", cursors)  # a pass that did not say when it read
    assert not cache.inbox_covered("a")
    cache.remember_cursors("a", cursors, read_since=100.0)
    assert cache.inbox_covered("a")  # in IDLE from the moment the pass began to read
    cache.remember_cursors("a", cursors, read_since=99.0)
    assert not cache.inbox_covered("a")  # mail between 99 and 100 was seen by nobody
    cache.cursors_confirmed("a", 150.0)  # a STATUS at 150 found nothing new
    assert cache.inbox_covered("a")
    cache.cursors_confirmed("a", 120.0)  # an older confirmation moves nothing back
    watcher.since = 140.0  # reconnected at 140: still after the confirmation at 150
    assert cache.inbox_covered("a")
    watcher.since = 160.0  # reconnected after it: mail between the two is nobody's
    assert not cache.inbox_covered("a")
    watcher.since = None  # waiting to reconnect
    assert not cache.inbox_covered("a")
    watcher.since = 100.0
    watcher.ended = "no IDLE"  # gave up on purpose: not a watch any more
    assert not cache.inbox_covered("a")
    watcher.ended = None
    assert cache.inbox_covered("a")
    cache.resize(0)  # keep_connections = 0: a login at every poll, the watch trusted for none
    assert not cache.inbox_covered("a")
    cache.resize(10)
    assert cache.inbox_covered("a")
    cache.unwatch("a")
    assert not cache.inbox_covered("a")
    cache.watch("a", StubWatcher())  # a watcher that cannot say: never trusted
    assert not cache.inbox_covered("a")
    cache.watch("a", watcher)
    cache.remember_cursors("a", None)  # an unclean pass forgets when, too
    cache.remember_cursors("a", cursors)
    assert not cache.inbox_covered("a")
    cache.remember_cursors("a", cursors, read_since=150.0)
    cache.discard("a")  # the lease lost: nothing of it is trusted any more
    cache.remember_cursors("a", cursors)
    assert not cache.inbox_covered("a")
    cache.cursors_confirmed("b", 150.0)  # no cursors: nothing to confirm
    assert not cache.inbox_covered("b")


def test_a_poll_answered_by_the_watch_counts_as_a_reuse() -> None:
    metrics = Metrics()
    cache = DaemonSessions(SyncConfig(), metrics, Rig().opener)
    cache.served_by_watch()
    assert cache.reused == 1
    assert metrics.registry.get_sample_value("syncd_imap_sessions_reused_total") == 1
