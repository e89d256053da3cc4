"""Hundreds of IDLE watches on one hub against a real Dovecot: few threads, every mailbox
woken by its own mail, connections closed when a watch stops, everything back after a
server restart, and a hostile server that floods IDLE costs only its own connection."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syncd.config import MailboxConfig
from syncd.connectors.imap_idle import FLOOD_BYTES, MAX_LINE
from syncd.engine.imap import idle_book, idle_hub
from syncd.engine.imap.idle_hub import WORKERS, IdleHub, Watch
from tests.daemon import wait_until
from tests.mail import make_message
from tests.servers.dovecot import Dovecot

pytestmark = pytest.mark.dovecot

MAILBOXES = 300
TLS_EVERY = 10  # every tenth mailbox over TLS, the rest plain
MAX_THREADS = 64
WAKE_WITHIN = 5.0  # seconds: Dovecot announces a delivery within about half a second


@pytest.fixture(scope="module")
def server() -> Iterator[Dovecot]:
    root = Path(tempfile.mkdtemp(prefix="syncd-test-push-"))
    users = {f"m{n}": f"pw-m{n}" for n in range(MAILBOXES)}
    dovecot = Dovecot(root, users, tls=True, max_connections=2 * MAILBOXES).start()
    yield dovecot
    dovecot.stop()
    if not os.environ.get("SYNCD_KEEP_TEST_SERVERS"):
        shutil.rmtree(root, ignore_errors=True)


class Wakes:
    """When each mailbox was first woken since the last ``clear``, and how often."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self.count: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str) -> None:
        with self._lock:
            self.first.setdefault(name, time.monotonic())
            self.count[name] = self.count.get(name, 0) + 1

    def clear(self) -> None:
        with self._lock:
            self.first.clear()
            self.count.clear()


def _box(server: Dovecot, n: int) -> MailboxConfig:
    tls = n % TLS_EVERY == 0
    return MailboxConfig(
        name=f"m{n}", owner=f"m{n}@example.com", host="127.0.0.1",
        port=server.tls_port if tls else server.port, security="tls" if tls else "plain",
        ca_file=str(server.cert_file) if tls else None, ca_only=tls,
        username=f"m{n}", password=f"pw-m{n}", timeout=10,
    )  # fmt: skip


def _established(port: int) -> int:
    """TCP connections to ``port`` on loopback that are open, from the kernel's table."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), Path(table).open() as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[3] == "01":  # ESTABLISHED
                    count += 1
    return count


def _deliver_and_time(server: Dovecot, wakes: Wakes, names: list[str]) -> list[float]:
    """Deliver to each mailbox; the seconds from each delivery until its watch woke."""
    sent: dict[str, float] = {}
    for name in names:
        sent[name] = time.monotonic()
        server.deliver(name, make_message(message_id=f"<{name}-{sent[name]}@acme.com>"))
    try:
        wait_until(lambda: all(n in wakes.first for n in names), WAKE_WITHIN, "the wakes")
    except AssertionError:
        missing = [n for n in names if n not in wakes.first]
        raise AssertionError(f"not woken within {WAKE_WITHIN} s: {missing}") from None
    latencies = [wakes.first[name] - sent[name] for name in names]
    assert max(latencies) < WAKE_WITHIN, latencies
    return latencies


def _watch_all(hub: IdleHub, server: Dovecot, wakes: Wakes) -> list[Watch]:
    watches = [hub.watch(_box(server, n), wakes) for n in range(MAILBOXES)]
    most = 0

    def all_open() -> bool:
        nonlocal most
        most = max(most, threading.active_count())
        return hub.open_count() == MAILBOXES

    wait_until(all_open, 60, f"{MAILBOXES} watches in IDLE")
    assert most <= MAX_THREADS, most
    return watches


def test_hundreds_of_mailboxes_on_one_thread(server: Dovecot) -> None:
    before = threading.active_count()
    wakes = Wakes()
    hub = IdleHub(connects_per_second=200)
    try:
        watches = _watch_all(hub, server, wakes)
        # One selector thread and the bounded pool, whatever the number of mailboxes.
        assert threading.active_count() - before <= WORKERS + 1
        assert threading.active_count() <= MAX_THREADS
        assert _established(server.port) + _established(server.tls_port) == MAILBOXES
        assert not wakes.first  # nothing arrived yet: nobody woken

        # Mail to any mailbox, plain or TLS, first or last, wakes that mailbox and no other.
        sample = [f"m{n}" for n in range(0, MAILBOXES, 13)] + [f"m{MAILBOXES - 1}"]
        latencies = _deliver_and_time(server, wakes, sample)
        assert set(wakes.first) == set(sample)
        assert sorted(latencies)[len(latencies) // 2] < 2.0, latencies

        # Stopping a watch closes its connection at once; the others stay.
        stopped = watches[1:MAILBOXES:3]
        for watch in stopped:
            watch.stop()
        wait_until(
            lambda: (
                _established(server.port) + _established(server.tls_port)
                == MAILBOXES - len(stopped)
            ),
            10,
            "the stopped watches' connections to close",
        )
        assert hub.open_count() == MAILBOXES - len(stopped)
        assert all(not w.alive and w.ended == "stopped" for w in stopped)
        wakes.clear()
        server.deliver(stopped[0].name, make_message(message_id="<to-a-stopped@acme.com>"))
        _deliver_and_time(server, wakes, ["m0"])  # delivered after: it woke, so would the other
        time.sleep(0.5)
        assert stopped[0].name not in wakes.first
    finally:
        hub.close(5)
    wait_until(
        lambda: _established(server.port) + _established(server.tls_port) == 0,
        10,
        "every connection to close",
    )
    assert hub.open_count() == 0


def test_every_watch_comes_back_after_the_server_restarts(server: Dovecot) -> None:
    wakes = Wakes()
    # Renewals every 3 s: 100 a second through the pool, beside the reconnections.
    hub = IdleHub(connects_per_second=200, renew_every=3.0)
    try:
        watches = _watch_all(hub, server, wakes)
        wait_until(lambda: sum(w.renewals for w in watches) >= MAILBOXES, 30, "renewals")
        assert not wakes.first  # a renewal is not news
        server.stop()
        server.deliver("m7", make_message(message_id="<while-down@acme.com>"))
        server.start()
        took = wait_until(
            lambda: hub.open_count() == MAILBOXES and len(wakes.first) == MAILBOXES,
            90,
            "every watch to reconnect",
        )
        # Each was woken once on its way back: mail may have come while it was away.
        assert all(w.alive for w in watches)
        assert set(wakes.first) == {w.name for w in watches}
        assert took < 90
        wakes.clear()
        _deliver_and_time(server, wakes, ["m3", "m150", "m290"])
        assert threading.active_count() <= MAX_THREADS
        assert all(w.crashes == 0 for w in watches)
    finally:
        hub.close(5)


class FloodingImap:
    """A loopback IMAP server that logs anyone in, then floods IDLE: endless short lines
    ("lines"), one line that never ends ("line"), or, before accepting IDLE, a byte every
    50 ms, which no socket timeout ever notices ("trickle").  Counts what it got to send."""

    def __init__(self, mode: str) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._mode = mode
        self.sessions = 0
        self.sent: list[int] = []  # bytes sent in IDLE, per session
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.sessions += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn, conn.makefile("rb") as lines:
            conn.sendall(b"* OK [CAPABILITY IMAP4rev1 IDLE] flooding test server\r\n")
            for raw in lines:
                tag, _, rest = raw.decode().rstrip("\r\n").partition(" ")
                command = rest.split(" ")[0].upper()
                if command == "CAPABILITY":
                    conn.sendall(b"* CAPABILITY IMAP4rev1 IDLE\r\n" + f"{tag} OK done\r\n".encode())
                elif command in ("EXAMINE", "SELECT"):
                    conn.sendall(
                        b"* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n" + f"{tag} OK done\r\n".encode()
                    )
                elif command == "IDLE" and self._mode == "trickle":
                    self.sent.append(0)
                    while not self._stop.wait(0.05):
                        conn.sendall(b"*")
                        self.sent[-1] += 1
                elif command == "IDLE":
                    conn.sendall(b"+ idling\r\n")
                    self._flood(conn)
                    return
                else:
                    conn.sendall(f"{tag} OK done\r\n".encode())

    def _flood(self, conn: socket.socket) -> None:
        chunk = b"x" * 8192 if self._mode == "line" else b"* OK junk junk junk junk\r\n" * 320
        self.sent.append(0)
        try:
            while not self._stop.is_set():
                conn.sendall(chunk)
                self.sent[-1] += len(chunk)
        except OSError:
            return  # the client hung up on us, as it should


@pytest.mark.parametrize("mode", ["lines", "line", "trickle"])
def test_a_flooding_server_costs_only_its_own_connection(server: Dovecot, mode: str) -> None:
    flood = FloodingImap(mode)
    wakes = Wakes()
    hub = IdleHub(connects_per_second=200)
    hostile = MailboxConfig(
        name="hostile", owner="h@example.com", host="127.0.0.1", port=flood.port,
        security="plain", username="h", password="x", timeout=2,
    )  # fmt: skip
    try:
        hub.watch(hostile, wakes)
        wait_until(lambda: flood.sessions >= 1 and bool(flood.sent), 10, "the flood to start")
        started = time.process_time()
        watches = [hub.watch(_box(server, n), wakes) for n in range(20)]
        wait_until(lambda: all(w.state == "idle" for w in watches), 30, "the honest watches")
        # The others are served while the flood goes on (or while it reconnects).
        latencies = _deliver_and_time(server, wakes, ["m2", "m11", "m19"])
        assert max(latencies) < WAKE_WITHIN
        wait_until(lambda: flood.sessions >= 2, 20, "the flooding connection to be dropped")
        # Dropped once its budget was spent: what it sent is bounded by the budget, the
        # kernel's socket buffers and the last read, not by its will.
        limit = (MAX_LINE if mode == "line" else FLOOD_BYTES) + 16 * 1024 * 1024
        assert max(flood.sent) < limit, flood.sent
        # And it comes back only after a backoff, not in a tight loop of logins.
        sessions = flood.sessions
        time.sleep(1.0)
        assert flood.sessions - sessions <= 3
        assert time.process_time() - started < 30  # not a core spinning on the flood
    finally:
        hub.close(5)
        flood.close()


class _Bug(Exception):
    """A bug in the selector loop itself."""


def test_a_selector_thread_killed_by_a_bug_is_started_again(
    server: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    wakes = Wakes()
    hub = IdleHub()
    try:
        first = hub.watch(_box(server, 5), wakes)
        wait_until(lambda: first.state == "idle", 10, "the first watch in IDLE")

        def bug(*_args: object) -> None:
            raise _Bug

        monkeypatch.setattr(threading, "excepthook", lambda _args: None)  # an expected death
        monkeypatch.setattr(hub, "_fire_timers", bug)
        hub._poke()
        # Its watches are no longer alive (so the daemon starts them again, with backoff)
        # and their connections went with the thread.
        wait_until(lambda: not first.alive, 5, "the watch to die with the thread")
        wait_until(lambda: _established(server.port) == 0, 5, "the connection to close")
        monkeypatch.undo()
        again = hub.watch(_box(server, 5), wakes)
        wait_until(lambda: again.state == "idle", 10, "the new thread's watch in IDLE")
        assert first.dead and not first.alive and again.alive
        _deliver_and_time(server, wakes, ["m5"])
    finally:
        hub.close(5)


def test_a_poll_borrows_the_watch_connection_and_idle_resumes(server: Dovecot) -> None:
    """A poll of a watched mailbox runs on the watch's own connection: out of IDLE, any
    folder examined, back into IDLE.  Mail that came during the poll past what it saw wakes
    the mailbox once back; a poll that failed on the connection makes the watch log in
    again; a stopped watch's connection closes when its poll gives it back."""
    wakes = Wakes()
    hub = IdleHub(connects_per_second=200)
    try:
        box = _box(server, 5)
        watch = hub.watch(box, wakes)
        wait_until(lambda: watch.state == "idle", 10, "the watch in IDLE")
        before = _established(server.port)

        session = watch.lend(2.0)
        assert session is not None and watch.state == "lent"
        assert watch.lend(0.2) is None  # one poll at a time
        seen = session.examine("INBOX").uidnext
        assert _established(server.port) == before  # no second connection
        watch.give_back(True, seen)
        wait_until(lambda: watch.state == "idle", 5, "IDLE again")
        time.sleep(0.3)
        assert not wakes.first  # nothing came: nobody woken

        # Mail that arrives while the connection is lent, after the poll looked at INBOX.
        session = watch.lend(2.0)
        assert session is not None
        seen = session.examine("INBOX").uidnext
        server.deliver(box.name, make_message(message_id="<during-the-poll@acme.com>"))
        watch.give_back(True, seen)
        wait_until(lambda: box.name in wakes.first, 5, "the wake for mail during the poll")
        assert watch.state == "idle"
        # Push still works after a loan.
        wakes.clear()
        _deliver_and_time(server, wakes, [box.name])

        # A poll that never read INBOX (its folders exclude it) is compared with INBOX as
        # IDLE last began: the mail pushed since wakes one more poll, then nothing does.
        for _ in range(2):
            wakes.clear()
            session = watch.lend(2.0)
            assert session is not None
            watch.give_back(True, None)
            wait_until(lambda: watch.state == "idle", 5, "IDLE again")
            time.sleep(0.3)
        assert not wakes.first
        session = watch.lend(2.0)
        assert session is not None
        server.deliver(box.name, make_message(message_id="<while-lent@acme.com>"))
        watch.give_back(True, None)
        wait_until(lambda: box.name in wakes.first, 5, "the wake for mail while lent")

        # A poll that failed on it: the connection is dropped, the watch logs in again.
        session = watch.lend(2.0)
        assert session is not None
        watch.give_back(False, None)
        wait_until(lambda: watch.state == "idle", 15, "logged in again")
        assert watch.alive

        # Stopped while lent: closed when given back.
        session = watch.lend(2.0)
        assert session is not None
        watch.stop()
        watch.give_back(True, None)
        assert watch.ended == "stopped" and watch.state == "ended"
        wait_until(lambda: _established(server.port) == before - 1, 10, "its connection closed")
    finally:
        hub.close(5)


class Lines:
    """A module's logger, recording each event's name and fields (structlog's own capture
    misses a logger cached before it, by any test that ran first in the process)."""

    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []

    def __getattr__(self, _level: str) -> Callable[..., None]:
        def line(event: str, **fields: object) -> None:
            self.events.append({"event": event, **fields})

        return line


def test_closing_a_hub_ends_every_watch_in_one_step(
    server: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon's SIGTERM closes its hub: every watch in IDLE ends in one step under the
    hub's lock, with one log line for all of them, not a lock, a wake and a line each (2,500
    of those, each waiting its turn for the GIL behind a metrics render, took 13 s of a
    10 s stop).  The bound is the closing thread's CPU time, which a loaded machine does not
    inflate the way it does wall time."""
    wakes = Wakes()
    hub = IdleHub(connects_per_second=200)
    try:
        watches = _watch_all(hub, server, wakes)
        pokes = 0
        poke = hub._poke

        def counted() -> None:  # each wake of the selector thread is a send(), a GIL switch
            nonlocal pokes
            pokes += 1
            poke()

        hub._poke = counted  # type: ignore[method-assign]
        lines = Lines()
        monkeypatch.setattr(idle_hub, "log", lines)
        monkeypatch.setattr(idle_book, "log", lines)
        cpu = time.thread_time()
        hub.close(5)
        cpu = time.thread_time() - cpu
        logs = list(lines.events)
        assert pokes == 1
    finally:
        hub.close(5)
    assert all(not w.alive and w.ended == "stopped" for w in watches)
    closed = [e for e in logs if e["event"] == "idle.closed"]
    assert [e["stopped"] for e in closed] == [MAILBOXES]
    assert not [e for e in logs if e["event"] == "idle.stopped"]
    # About 5 µs a watch here (14 µs with a wake and a captured line each): a bound that
    # catches anything worse than linear, not a figure (bench/fleet.py measures the stop).
    assert cpu < MAILBOXES * 50e-6, cpu
    wait_until(
        lambda: _established(server.port) + _established(server.tls_port) == 0,
        10,
        "every connection to close",
    )
    assert hub.open_count() == 0
