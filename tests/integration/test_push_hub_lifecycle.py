"""What a push hub holds over months against a real Dovecot: its logins are counted in the
daemon's login metric, it gives back every file descriptor it took (connections, its wake
sockets) once closed, and a watch whose selector thread died never keeps or reopens a
connection when its pool step ends afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syncd.config import MailboxConfig
from syncd.connectors import imap_idle
from syncd.connectors.imap_idle import IdleConnection
from syncd.engine.imap.idle_hub import IdleHub
from tests.daemon import wait_until
from tests.integration.test_push_hub import _established
from tests.servers.dovecot import Dovecot

pytestmark = pytest.mark.dovecot


@pytest.fixture(scope="module")
def server() -> Iterator[Dovecot]:
    root = Path(tempfile.mkdtemp(prefix="syncd-test-push-life-"))
    dovecot = Dovecot(root, {"a": "pw-a", "b": "pw-b"}).start()
    yield dovecot
    dovecot.stop()
    if not os.environ.get("SYNCD_KEEP_TEST_SERVERS"):
        shutil.rmtree(root, ignore_errors=True)


def _box(server: Dovecot, name: str, password: str | None = None) -> MailboxConfig:
    return MailboxConfig(
        name=name, owner=f"{name}@example.com", host="127.0.0.1",
        port=server.port, security="plain",
        username=name, password=password or f"pw-{name}", timeout=10,
    )  # fmt: skip


def _fds() -> list[str]:
    """What each descriptor of this process points at ("socket:[inode]", a path, an epoll
    instance...): a leak is one more of something, whatever number it reuses."""
    found = []
    for path in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # closed while listed (the listing's own, say)
            found.append(str(path.readlink()))
    return sorted(found)


def test_the_watchers_logins_are_counted_by_outcome(server: Dovecot) -> None:
    outcomes: list[str] = []
    lock = threading.Lock()

    def observe(outcome: str) -> None:
        with lock:
            outcomes.append(outcome)

    hub = IdleHub(on_login=observe)
    try:
        good = hub.watch(_box(server, "a"), lambda _n: None)
        wait_until(lambda: good.state == "idle", 10, "the watch in IDLE")
        refused = hub.watch(_box(server, "b", password="wrong"), lambda _n: None)
        wait_until(lambda: refused.ended is not None, 15, "the refused login to end its watch")
        assert refused.ended == "login refused"
        with lock:
            assert sorted(outcomes) == ["credentials", "ok"], outcomes
    finally:
        hub.close(5)


def test_a_closed_hub_gives_back_every_file_descriptor(server: Dovecot) -> None:
    before = _fds()
    hub = IdleHub(connects_per_second=50)
    port = server.port
    # Churn: watches started and stopped in every state, failed logins (each failed login
    # costs Dovecot's 2 s auth delay: three rounds show a leak as well as ten).
    for _round in range(3):
        watch = hub.watch(_box(server, "a"), lambda _n: None)
        bad = hub.watch(_box(server, "b", password="wrong"), lambda _n: None)
        wait_until(
            lambda w=watch, b=bad: w.state == "idle" and b.ended is not None, 15, "the round"
        )
        watch.stop()
        hub.watch(_box(server, "a"), lambda _n: None).stop()  # stopped while queued
    wait_until(lambda: _established(port) == 0, 10, "the stopped watches' connections to close")
    thread = hub._thread
    hub.close(5)
    assert thread is not None
    thread.join(5)
    # Nothing the hub opened is left; descriptors of this process's other work (an earlier
    # test's server connection closing meanwhile) may go.
    assert not Counter(_fds()) - Counter(before), (before, _fds())

    # A hub closed and used again starts its threads again and watches as before.
    again = hub.watch(_box(server, "a"), lambda _n: None)
    wait_until(lambda: again.state == "idle", 10, "a watch on the reopened hub in IDLE")
    thread = hub._thread
    hub.close(5)
    assert thread is not None
    thread.join(5)
    wait_until(lambda: _established(port) == 0, 10, "the connection to close")
    # Nothing the hub opened is left; descriptors of this process's other work (an earlier
    # test's server connection closing meanwhile) may go.
    assert not Counter(_fds()) - Counter(before), (before, _fds())


class _Bug(Exception):
    """A bug in the selector loop itself."""


def test_a_login_that_ends_after_its_thread_died_keeps_no_connection(
    server: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = server.port
    release, opened = threading.Event(), threading.Event()
    real_open: Callable[..., IdleConnection | None] = IdleConnection.open

    def slow_open(config: MailboxConfig, *args: object) -> IdleConnection | None:
        if config.name == "a":
            release.wait(10)  # held in the pool while the selector thread dies
            try:
                return real_open(config, *args)
            finally:
                opened.set()
        return real_open(config, *args)

    monkeypatch.setattr(imap_idle.IdleConnection, "open", staticmethod(slow_open))
    hub = IdleHub()
    try:
        first = hub.watch(_box(server, "a"), lambda _n: None)
        wait_until(lambda: first.state == "connecting", 5, "the login to start")

        def bug(*_args: object) -> None:
            raise _Bug

        with monkeypatch.context() as patch:
            patch.setattr(threading, "excepthook", lambda _args: None)  # an expected death
            patch.setattr(hub, "_fire_timers", bug)
            hub._poke()
            wait_until(lambda: not hub.running, 5, "the selector thread to die")
        # The daemon starts its watches again on a new thread; the old login then ends.
        again = hub.watch(_box(server, "b"), lambda _n: None)
        wait_until(lambda: again.state == "idle", 10, "the new thread's watch in IDLE")
        assert first.dead and not first.alive
        release.set()
        wait_until(opened.is_set, 10, "the dead watch's login to end")
        with contextlib.suppress(AssertionError):
            wait_until(lambda: _established(port) > 1, 2, "a second connection")
        # Only the live watch holds a connection: the dead one closed its login at once.
        assert _established(port) == 1
        assert first.connection is None and hub.open_count() == 1
        assert hub._book.logging_in == 0
    finally:
        release.set()
        hub.close(5)
