"""IMAP IDLE on INBOX for every mailbox of the daemon, on one selector thread.

A watch only listens; a wake-up makes the daemon poll the mailbox, so a message is read,
matched and committed exactly as on any poll.  The poll runs on the watch's own connection,
lent to it (``lend``: out of IDLE; ``give_back``: INBOX examined, IDLE again), so a watched
mailbox costs the server one connection and one login.  Threads do not grow with mailboxes:
one thread waits on every IDLE socket at once (epoll), and a small pool does the blocking
steps (connect, TLS, login, EXAMINE, IDLE; the renewals), so 2,000 mailboxes cost about
twenty threads.  Logins are staggered: a few at a time and at most ``connects_per_second``,
so a start or a server restart does not log in to every mailbox in the same second.

IDLE is left and entered again every few minutes (``RENEW_EVERY``): servers drop IDLE
after 30 minutes (RFC 2177 asks clients to renew within 29), and the NOOP on the way is
how a connection that died silently is found.  The server is a peer we do not control:
whatever it sends (connectors/imap_idle.py bounds it) and whatever that raises, the
connection is dropped and opened again after the waits of the ``RECONNECT`` policy; after
an internal error (a bug, a library that changed) the longest of them straight away.  A
watch only ends on purpose (stopped, login refused, no IDLE) and says why in ``ended``;
the daemon starts again a watch that ended any other way (``alive`` is False).

Where the server offers NOTIFY (RFC 5465), the watch's connection also hears of new mail in
the mailbox's other captured folders (the Sent one), so that a poll asks the server nothing
about a folder the watch has covered since the poll's cursors were read
(``folders_covered_since``).  Every loss of that cover (a reconnect, NOTIFY refused,
NOTIFICATIONOVERFLOW, a folder renamed or deleted) makes the polls ask STATUS again.

This module owns the threads and the connections: the selector thread that alone reads
the sockets in IDLE, the pool that runs the blocking steps, and the handing of a connection
to a poll and back.  Beside it, under the same lock: ``WatchBook`` (idle_book.py), the
rules of a watch's life (the login queue and pace, the renewal and reconnect timers, the
backoff, what a failure ends); ``Watch`` (idle_watch.py), the handle the daemon holds.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from syncd.config import MailboxConfig
from syncd.connectors.imap import ImapSession
from syncd.connectors.imap_idle import FOLDER as INBOX
from syncd.connectors.imap_idle import IdleConnection
from syncd.connectors.retry import RECONNECT
from syncd.engine.imap.idle_book import WatchBook
from syncd.engine.imap.idle_watch import OPEN, Watch, gone
from syncd.errors import TransientError
from syncd.group_tokens import TokenCaches
from syncd.logs import get_logger
from syncd.secrets import read_secret

# ``Watch`` is imported from here too: the hub hands them out.
__all__ = [
    "CONNECTS_PER_SECOND",
    "LOGINS",
    "RECONNECT_MAX",
    "RENEW_EVERY",
    "WORKERS",
    "IdleHub",
    "Watch",
]

log = get_logger("syncd.push")

RENEW_EVERY = 5 * 60.0  # seconds in IDLE before DONE + NOOP + IDLE again
RECONNECT_MAX = RECONNECT.cap
WORKERS = 16  # threads for the blocking steps, whatever the number of mailboxes
# Logins at once: the other workers stay free for renewals.  A login with its EXAMINE and
# IDLE is four round trips and a process started on the server: on a busy machine 50-100 ms,
# so that a takeover of a thousand mailboxes is bound by how many run at once.
LOGINS = 12
CONNECTS_PER_SECOND = 200.0  # logins started per second, all mailboxes together
TICK = 5.0  # the selector thread looks at its timers at least this often


class IdleHub:
    """Every IDLE connection of the process: one selector thread and a bounded pool."""

    def __init__(
        self,
        *,
        renew_every: float = RENEW_EVERY,
        workers: int = WORKERS,
        logins: int = LOGINS,
        connects_per_second: float = CONNECTS_PER_SECOND,
        on_login: Callable[[str], None] | None = None,
        tokens: TokenCaches | None = None,
        notify: bool = True,
    ) -> None:
        self._renew_every = renew_every
        self._use_notify = notify  # NOTIFY where the server offers it (False: IDLE on INBOX only)
        self._on_login = on_login  # each login's outcome, for syncd_imap_logins_total
        self._tokens = tokens  # a group member's XOAUTH2 token: the daemon's caches
        self._workers = workers
        self._logins = max(1, min(logins, workers))
        self._lock = threading.Lock()
        self._book = WatchBook(logins=self._logins, connects_per_second=connects_per_second)
        self._to_register: list[Watch] = []  # handed back by workers, for the selector
        self._to_lend: list[Watch] = []  # asked for by polls, to leave the selector
        self._to_close: list[IdleConnection] = []
        # TLS holds decrypted bytes the selector cannot see (the selector thread's own set).
        self._tls_ready: set[Watch] = set()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_shut = False
        self._selector: selectors.BaseSelector | None = None
        # Made with each selector thread and closed by it when it ends (two descriptors).
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None

    # --- the daemon's side ----------------------------------------------------------------

    def watch(
        self,
        box: MailboxConfig,
        on_new_mail: Callable[[str], None],
        on_open: Callable[[tuple[int | None, int | None]], None] | None = None,
    ) -> Watch:
        """Start watching ``box``'s INBOX; ``on_new_mail(name)`` is called (on a hub thread)
        when the server announces mail, and once after every reconnection; ``on_open`` once
        after the first login, with INBOX's (UIDVALIDITY, UIDNEXT) then."""
        watch = Watch(box, on_new_mail, self, on_open)
        with self._lock:
            self._ensure_running()
            self._book.add(watch)
        self._poke()
        return watch

    def unwatch(self, watch: Watch) -> None:
        """Stop a watch; its connection, if open, is closed within a moment."""
        with self._lock:
            self._end(watch, quiet=False)
        self._poke()

    def _end(self, watch: Watch, *, quiet: bool) -> bool:
        """Stop a watch (lock held); False when it had ended already."""
        if watch.ended is not None:
            return False
        watch.ended = "stopped"
        if watch.state == "idle" and watch.connection is not None:
            self._to_close.append(watch.connection)
            watch.connection = None
        if watch.state in ("queued", "waiting", "idle"):
            self._book.finish(watch, quiet=quiet)
        # connecting / renewing: the worker closes the connection when its step ends
        return True

    def open_count(self) -> int:
        """Watches with a connection open now (the syncd_watchers_open gauge)."""
        with self._lock:
            return self._book.open_count()

    def covered_since(self, watch: Watch) -> float | None:
        with self._lock:
            if gone(watch) or watch.state not in OPEN or watch.connection is None:
                return None
            return watch.connected_at or None

    def folders_covered(self, watch: Watch) -> dict[str, float]:
        with self._lock:
            connection = watch.connection
            if gone(watch) or watch.state not in OPEN or not watch.connected_at:
                return {}
            if connection is None:
                return {}
            return {INBOX: watch.connected_at, **connection.covered()}

    def lend(self, watch: Watch, wait: float) -> ImapSession | None:
        """Take ``watch``'s connection out of IDLE for a poll on the caller's thread, so
        that polling a watched mailbox costs no login and no second connection.  The
        selector thread lets go of the socket first (it alone reads it in IDLE)."""
        with self._lock:
            if gone(watch) or watch.state != "idle" or watch.connection is None:
                return None
            watch.state = "lending"
            watch._handed.clear()
            self._to_lend.append(watch)
        self._poke()
        handed = watch._handed.wait(wait)
        with self._lock:
            if not handed and watch.state == "lending":
                # The selector thread was busy: the poll logs in on its own; the watch stays
                # registered in IDLE (stopped meanwhile: closed now), its renewal re-armed.
                watch.state = "idle"
                if gone(watch):
                    if watch.connection is not None:
                        self._to_close.append(watch.connection)
                        watch.connection = None
                    self._book.finish(watch)
                else:
                    self._book.at(watch, time.monotonic() + self._renew_every)
                self._poke()
                return None
            connection = watch.connection
            if watch.state != "lent" or connection is None:
                return None
        try:
            connection.leave_idle()
        except Exception as err:
            self._broken(watch, connection, err)
            return None
        return connection.session

    def give_back(
        self,
        watch: Watch,
        usable: bool,
        inbox_uidnext: int | None,
        seen: Mapping[str, int | None] | None = None,
    ) -> None:
        """The poll is over: INBOX examined and IDLE again, on the caller's thread; a
        connection the poll left in doubt is dropped and the watch logs in anew."""
        with self._lock:
            connection = watch.connection
            if watch.state != "lent" or connection is None:
                return
        try:
            if gone(watch) or not usable:
                raise TransientError(
                    f"mailbox {watch.box.name}: the poll failed on the watch's connection"
                )
            new_mail = connection.reenter_idle(inbox_uidnext, seen)
        except Exception as err:
            self._broken(watch, connection, err)
            return
        with self._lock:
            if gone(watch):
                connection.close()
                watch.connection = None
                self._book.finish(watch)
                return
            watch.state = "idle"
            self._to_register.append(watch)
        self._poke()
        if new_mail:
            self._notify(watch)

    def _broken(self, watch: Watch, connection: IdleConnection, err: Exception) -> None:
        connection.close()
        with self._lock:
            self._book.drop(watch, err)
        self._poke()

    def take_dead(self) -> list[Watch]:
        """The watches marked dead since the last call (killed by what no handler catches,
        or with the selector thread that held them).  While the thread itself is dead
        (``running`` False) every watch of it is dead too, though not marked yet."""
        with self._lock:
            return self._book.take_dead()

    def watching(self) -> int:
        with self._lock:
            return len(self._book.watches)

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def close(self, timeout: float = 1.0) -> None:
        """Stop every watch and close their connections; waits at most ``timeout``."""
        # Every watch in one step under the lock, and one log line: stopped one at a time
        # (the lock, a wake and a log line each), 2,500 watches took 13 s of a SIGTERM on a
        # loaded daemon, each step waiting its turn for the GIL.
        with self._lock:
            watches = list(self._book.watches)
            stopped = sum(self._end(watch, quiet=True) for watch in watches)
            self._closing = True
        self._poke()
        if stopped:
            log.info("idle.closed", stopped=stopped)
        deadline = time.monotonic() + timeout
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool_shut = True
        for watch in watches:
            watch.join(max(0.0, deadline - time.monotonic()))

    # --- the selector thread ----------------------------------------------------------------

    def _ensure_running(self) -> None:
        """Start the threads, or start them again after the selector thread died of a bug
        (called with the lock held).  The watches of a dead thread are dead too: their
        connections are closed and the daemon starts them again, with its backoff."""
        if self.running:
            return
        if self._thread is not None:
            self._book.kill_all()
            self._to_register.clear()
            self._tls_ready.clear()
        self._closing = False
        if self._pool is None or self._pool_shut:  # none yet, or shut down by close()
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="push")
            self._pool_shut = False
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        self._wake_r, self._wake_w = wake_r, wake_w
        self._selector = selectors.DefaultSelector()
        self._selector.register(wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(
            target=self._run, args=(wake_r, wake_w), name="push-hub", daemon=True
        )
        self._thread.start()

    def _poke(self) -> None:
        wake = self._wake_w
        if wake is None:
            return  # no thread yet
        with contextlib.suppress(OSError):  # full: the thread is awake already; closed: gone
            wake.send(b"\0")

    def _run(self, wake_r: socket.socket, wake_w: socket.socket) -> None:
        selector = self._selector
        assert selector is not None
        try:
            while True:
                events = selector.select(self._timeout())
                with self._lock:
                    if self._closing:
                        break
                    self._apply_handovers(selector)
                ready = [key.data for key, _ in events if key.data is not None]
                ready += [w for w in list(self._tls_ready) if w not in ready]
                for watch in ready:
                    self._read(selector, watch)
                for key, _ in events:
                    if key.data is None:
                        with contextlib.suppress(OSError):
                            wake_r.recv(4096)
                self._fire_timers(selector)
                self._start_logins()
        finally:
            self._close_all(selector)
            wake_r.close()
            wake_w.close()

    def _timeout(self) -> float:
        with self._lock:
            if self._tls_ready or self._to_register or self._to_close or self._to_lend:
                return 0.0
            soonest = self._book.wait(TICK)
        return max(0.0, soonest)

    def _apply_handovers(self, selector: selectors.BaseSelector) -> None:
        """Register what the workers brought into IDLE; let go of what polls borrow; close
        what was stopped (lock held)."""
        for connection in self._to_close:
            with contextlib.suppress(KeyError, ValueError, OSError):
                selector.unregister(connection.fileno())
            connection.close()
        self._to_close.clear()
        for watch in self._to_lend:
            if watch.state == "lending":  # not given up on by its poll meanwhile
                self._unregister(selector, watch, keep=True)
                watch.state = "lent"
            watch._handed.set()
        self._to_lend.clear()
        for watch in self._to_register:
            if watch.state == "idle" and watch.connection is not None:
                try:
                    selector.register(watch.connection.fileno(), selectors.EVENT_READ, watch)
                except (OSError, ValueError, KeyError) as err:  # a socket gone bad meanwhile
                    watch.connection.close()
                    watch.connection = None
                    self._book.failed(watch, err)
                    continue
                if watch.connection.pending():
                    self._tls_ready.add(watch)
                self._book.at(watch, time.monotonic() + self._renew_every)
        self._to_register.clear()

    def _read(self, selector: selectors.BaseSelector, watch: Watch) -> None:
        self._tls_ready.discard(watch)
        connection = watch.connection
        if watch.state != "idle" or connection is None:
            return
        try:
            new_mail = connection.read_ready()
        except Exception as err:
            with self._lock:
                self._unregister(selector, watch)
                self._book.failed(watch, err)
            return
        if connection.pending():
            self._tls_ready.add(watch)
        if new_mail:
            self._notify(watch)

    def _fire_timers(self, selector: selectors.BaseSelector) -> None:
        with self._lock:
            renew = self._book.fire(time.monotonic())
            for watch in renew:
                self._unregister(selector, watch, keep=True)
        assert self._pool is not None
        for watch in renew:
            with contextlib.suppress(RuntimeError):  # the pool is shut down: we are closing
                self._pool.submit(self._step, watch, self._renew)

    def _start_logins(self) -> None:
        assert self._pool is not None
        with self._lock:
            starting = self._book.take_logins()
        for watch in starting:
            with contextlib.suppress(RuntimeError):  # the pool is shut down: we are closing
                self._pool.submit(self._step, watch, self._connect)

    def _unregister(
        self, selector: selectors.BaseSelector, watch: Watch, *, keep: bool = False
    ) -> None:
        """Take a watch's socket out of the selector, and close it unless ``keep`` (lock held)."""
        connection = watch.connection
        self._tls_ready.discard(watch)
        if connection is None:
            return
        with contextlib.suppress(KeyError, ValueError, OSError):
            selector.unregister(connection.fileno())
        if not keep:
            connection.close()
            watch.connection = None

    def _close_all(self, selector: selectors.BaseSelector) -> None:
        with self._lock:
            for connection in self._to_close:
                connection.close()
            self._to_close.clear()
            for watch in self._book.watches:
                # A lent connection is closed by its poll's give_back; one being lent is not
                # lent yet: the selector thread still owns it.
                if watch.state in ("idle", "lending") and watch.connection is not None:
                    watch.connection.close()
                    watch.connection = None
        with contextlib.suppress(Exception):
            selector.close()

    # --- the workers' steps -----------------------------------------------------------------

    def _step(self, watch: Watch, step: Callable[[Watch], bool]) -> None:
        """Run one blocking step; whatever happens, the watch goes back to the hub."""
        try:
            new_mail = step(watch)
        except Exception as err:
            with self._lock:
                if step == self._connect:
                    self._book.login_ended(watch)
                self._book.drop(watch, err)
            self._poke()
            return
        except BaseException:
            with self._lock:  # what no handler catches: the daemon starts the watch again
                if step == self._connect:
                    self._book.login_ended(watch)
                self._book.died(watch)
            self._poke()
            raise
        self._poke()
        if new_mail:
            self._notify(watch)

    def _connect(self, watch: Watch) -> bool:
        box = watch.box
        connection = IdleConnection.open(
            box,
            lambda: read_secret(box, what=f"mailbox {box.name}", tokens=self._tokens),
            self._on_login,
            self._use_notify,
        )
        if connection is None:
            with self._lock:
                self._book.login_ended(watch)
                watch.supported = False
                self._book.end(watch, "no IDLE")
            return False
        try:
            new_mail = connection.enter_idle()
        except BaseException:
            connection.close()
            raise
        with self._lock:
            self._book.login_ended(watch)
            watch.supported = True
            if gone(watch):  # stopped, or its thread died: never registered again
                connection.close()
                self._book.finish(watch)
                return False
            log.debug("idle.started", mailbox=box.name, folder="INBOX")
            watch.connection, watch.state = connection, "idle"
            watch.connected_at = time.monotonic()
            self._to_register.append(watch)
            back, watch.reconnecting = watch.reconnecting, False
            opened, watch.on_open = watch.on_open, None
        if opened is not None:
            try:
                opened(connection.opened_at)
            except Exception as err:  # the daemon's bookkeeping must not cost the watch
                log.error("idle.callback_failed", mailbox=box.name, error=type(err).__name__)
        return new_mail or back  # mail may have come while we were away

    def _renew(self, watch: Watch) -> bool:
        connection = watch.connection
        assert connection is not None
        new_mail = connection.renew()
        with self._lock:
            watch.renewals += 1
            if gone(watch):
                connection.close()
                watch.connection = None
                self._book.finish(watch)
                return False
            watch.state = "idle"
            self._to_register.append(watch)
        return new_mail

    def _notify(self, watch: Watch) -> None:
        if watch.ended is not None:
            return
        try:
            watch.on_new_mail(watch.box.name)
        except Exception as err:  # the daemon's wake must not take the hub down
            log.error("idle.callback_failed", mailbox=watch.box.name, error=type(err).__name__)
