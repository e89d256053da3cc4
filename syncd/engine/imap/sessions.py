"""Kept IMAP sessions: a mailbox's connection lives from one poll to the next.

Logging in costs the server far more than an unchanged folder does (a connection, TLS, an
authentication, often a process), and costs providers' login budgets.  The daemon keeps
each mailbox's session after a poll and hands it to the next one:

- one worker at a time: a session is checked out for a poll and checked in after it;
  a poll that failed closes it instead (its state is unknown);
- bounded: at most ``capacity`` sessions wait between polls, the least recently used
  closed beyond; one unused for ``idle_timeout`` is logged out (well before the server's
  autologout, 30 minutes by RFC 3501);
- checked before use without a round trip (``looks_alive``), and if its first command
  still fails (the server restarted, or kicked us, in silence) it is dropped and the
  command runs again once on a fresh login, within the same poll, so a restart between
  two polls never shows as a failed poll.  The fresh connection's errors are the
  connector's, classified as always.

``discard(name)`` closes a mailbox's session when the daemon stops syncing it (removed
from the config, lease lost or handed over); ``close_all`` logs every one out at shutdown.

A mailbox with a live IDLE watcher (``watch``) keeps no poll session of its own: a second
connection would make N mailboxes cost the server 2 x N (providers cap connections per
account: Gmail at 15).  Its polls borrow the watcher's connection instead: out of IDLE for
the poll, INBOX examined and IDLE again after it (engine/imap/idle_hub.py), so a watched mailbox
costs one connection and one login for as long as it stays up.  When the watcher has
nothing to lend (connecting, reconnecting, renewing) the poll logs in and out.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar, cast, runtime_checkable

from syncd.config import MailboxConfig, SyncConfig
from syncd.connectors.base import FetchedMessage, FolderInfo, FolderStatus, MailSession
from syncd.connectors.imap_idle import FOLDER as INBOX
from syncd.errors import RemoteConfigError, RemoteError
from syncd.logs import get_logger
from syncd.metrics import Metrics

if TYPE_CHECKING:
    from syncd.store.state import Cursor

log = get_logger("syncd.imap_sessions")

T = TypeVar("T")
Opener = Callable[[MailboxConfig, int], MailSession]
# Called after each login attempt with its outcome: "ok" or the error's kind.
LoginObserver = Callable[[str], None]

LOGOUT_WITHIN = 2.0  # seconds a polite LOGOUT may wait for its answer
# All of them at shutdown, within SIGTERM's 10 s (workers get 5 s first).
SHUTDOWN_LOGOUT_WITHIN = 1.5
# A mailbox's default folders (INBOX and the Sent one) are listed again at most this
# often: a LIST per poll would double the cost of an unchanged mailbox.
LIST_EVERY = 900.0  # seconds
# How long a poll waits for a watcher to let go of its connection before logging in.
LEND_WAIT = 2.0  # seconds


@runtime_checkable
class Keepable(Protocol):
    """What a session must offer to be kept (ImapSession does)."""

    def looks_alive(self) -> bool: ...

    def close_within(self, seconds: float) -> None: ...


class Watcher(Protocol):
    """An IDLE watcher as the cache sees it: ``ended`` is None while it holds (or is
    getting back) its own connection; set once it gave up on purpose (no IDLE, login refused,
    stopped)."""

    @property
    def ended(self) -> str | None: ...


@runtime_checkable
class Lender(Protocol):
    """A watcher that lends its logged-in connection to a poll (idle_hub.py's Watch)."""

    def lend(self, wait: float) -> MailSession | None: ...

    def give_back(
        self, usable: bool, inbox_uidnext: int | None, seen: Mapping[str, int | None] | None = None
    ) -> None: ...


@runtime_checkable
class Covering(Protocol):
    """A watcher that can say since when it has kept INBOX covered (idle_hub.py's Watch)."""

    def inbox_covered_since(self) -> float | None: ...


@runtime_checkable
class CoveringFolders(Protocol):
    """A watcher that can say since when it has kept each folder covered: INBOX in IDLE,
    others by IMAP NOTIFY (idle_hub.py's Watch)."""

    def folders_covered_since(self) -> dict[str, float]: ...


def _looks_alive(session: MailSession) -> bool:
    return not isinstance(session, Keepable) or session.looks_alive()


def _close(session: MailSession, seconds: float) -> None:
    try:
        if isinstance(session, Keepable):
            session.close_within(seconds)
        else:
            session.close()
    except Exception as err:  # closing must never fail a poll or a shutdown
        log.debug("imap.close_failed", error=type(err).__name__)


@dataclass(slots=True)
class _Idle:
    session: MailSession
    box: MailboxConfig
    max_bytes: int
    since: float  # clock() when it was checked in


class SessionCache:
    """Sessions waiting between polls, by mailbox name.  Thread-safe."""

    def __init__(
        self,
        opener: Opener,
        *,
        capacity: int,
        idle_timeout: float,
        on_login: LoginObserver | None = None,
        on_reuse: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._opener = opener
        self.capacity = capacity
        self.idle_timeout = idle_timeout
        self._on_login = on_login
        self._on_reuse = on_reuse
        self._clock = clock
        self._lock = threading.Lock()
        self._logouts = _Logouts()
        self._idle: OrderedDict[str, _Idle] = OrderedDict()  # least recently used first
        self._out: dict[str, _Borrowed] = {}  # checked out, by mailbox
        self._listed: dict[str, tuple[float, list[str]]] = {}  # default folders, by mailbox
        self._watchers: dict[str, Watcher] = {}  # mailboxes with an IDLE connection of their own
        # Folders a fresh connection was refused (a typo, a folder deleted): the same NO on a
        # kept one is the folder's answer, not a stale connection's, and costs no login.
        self._refused: dict[str, set[str]] = {}
        # Each mailbox's folder cursors as its last clean pass left them, by folder: what a
        # poll compares the server's STATUS with before it touches the database.  A cursor
        # moves only forward (or to a new UIDVALIDITY), so one older than the database's
        # costs a full pass, never a missed message; dropped with the session (``discard``).
        self._cursors: dict[str, dict[str, Cursor]] = {}
        # When the pass that left them began (time.monotonic()), for ``inbox_covered``.
        self._cursors_read: dict[str, float] = {}
        # Discards by mailbox: a poll that began before the latest one (still logging in
        # when the mailbox left the config or its lease moved) does not keep its session.
        self._discards: dict[str, int] = {}
        self._closed = False
        self._kinds: dict[tuple[type, type], bool] = {}  # (type, protocol): implements it
        self.logins = 0
        self.reused = 0

    # --- what the engine calls -----------------------------------------------------------------

    def open(self, box: MailboxConfig, max_bytes: int) -> MailSession:
        """A session for one poll (the signature of MailSync's ``opener``): the watcher's
        connection, lent for the poll, or the kept one when it still looks alive, else a
        fresh login.  Its ``close()`` checks it back in."""
        with self._lock:
            kept = self._idle.pop(box.name, None)
            epoch = self._discards.get(box.name, 0)
            watcher: object = self._watchers.get(box.name) if self._watched(box.name) else None
        # keep_connections = 0 asks for a login every poll: the watcher's is not borrowed.
        lender = cast(Lender, watcher) if self._is(watcher, Lender) else None
        if kept is None and self.capacity > 0 and lender is not None:
            lent = self._borrow_from(lender, box, max_bytes)
            if lent is not None:
                lent.epoch = epoch
                with self._lock:
                    self._out[box.name] = lent
                return lent
        if kept is not None and (kept.box != box or kept.max_bytes != max_bytes):
            _close(kept.session, LOGOUT_WITHIN)  # settings changed on reload: log in anew
            kept = None
        if kept is not None and not _looks_alive(kept.session):
            log.info("imap.kept_session_gone", mailbox=box.name)
            _close(kept.session, 0.1)
            kept = None
        if kept is not None:
            with self._lock:
                self.reused += 1
            if self._on_reuse is not None:
                self._on_reuse()
            borrowed = _Borrowed(self, box, max_bytes, kept.session, reused=True)
        else:
            borrowed = _Borrowed(self, box, max_bytes, self._login(box, max_bytes), reused=False)
        borrowed.epoch = epoch
        with self._lock:
            self._out[box.name] = borrowed
        return borrowed

    def _borrow_from(self, watcher: Lender, box: MailboxConfig, max_bytes: int) -> _Borrowed | None:
        try:
            session = watcher.lend(LEND_WAIT)
        except Exception as err:  # the watcher's trouble is its own: this poll logs in
            log.warning("imap.lend_failed", mailbox=box.name, error=type(err).__name__)
            return None
        if session is None:
            return None
        limit = getattr(session, "limit_bodies", None)
        if limit is not None:
            limit(max_bytes)
        with self._lock:
            self.reused += 1
        if self._on_reuse is not None:
            self._on_reuse()
        borrowed = _Borrowed(self, box, max_bytes, session, reused=True)
        borrowed.lender = watcher
        return borrowed

    def discard(self, name: str) -> None:
        """The daemon no longer syncs mailbox ``name`` here: close its session now, or when
        the poll holding it ends."""
        with self._lock:
            kept = self._idle.pop(name, None)
            self._listed.pop(name, None)
            self._refused.pop(name, None)
            self._cursors.pop(name, None)
            self._cursors_read.pop(name, None)
            self._discards[name] = self._discards.get(name, 0) + 1
            borrowed = self._out.get(name)
            if borrowed is not None:
                borrowed.retired = True
        if kept is not None:
            self._logouts.close_soon([kept])  # the caller may be the daemon's main loop, lock held

    close = discard  # the name another part of the daemon may look for

    def remember_cursors(
        self, name: str, cursors: dict[str, Cursor] | None, *, read_since: float | None = None
    ) -> None:
        """The cursors a clean pass of mailbox ``name`` left (None: it was not clean);
        ``read_since``: time.monotonic() before the pass read the server (its start)."""
        with self._lock:
            if cursors is None:
                self._cursors.pop(name, None)
                self._cursors_read.pop(name, None)
            else:
                self._cursors[name] = dict(cursors)
                if read_since is None:
                    self._cursors_read.pop(name, None)
                else:
                    self._cursors_read[name] = read_since

    def cursors(self, name: str) -> dict[str, Cursor] | None:
        with self._lock:
            found = self._cursors.get(name)
            return None if found is None else dict(found)

    def cursors_confirmed(self, name: str, read_since: float) -> None:
        """The server confirmed, from ``read_since`` (time.monotonic()) on, that mailbox
        ``name``'s cursors are still current: a later poll trusts a watch as from then."""
        with self._lock:
            if name in self._cursors:
                self._cursors_read[name] = max(read_since, self._cursors_read.get(name, 0.0))

    def inbox_covered(self, name: str) -> bool:
        """INBOX of mailbox ``name`` needs no STATUS to know it is unchanged since its
        cursor: a watch has held it in IDLE without a break since before the last clean
        pass read it, so any message come since was reported to the daemon, whose next
        poll is then a full pass (Daemon.wake).  Not for a watch that (re)connected after
        that read: mail between the two is only ever seen by asking the server.  Never
        with keep_connections = 0: that asks for a login at every poll (a credential
        revoked since the watch logged in is found by the next poll, not the next mail)."""
        with self._lock:
            watcher: object = self._watchers.get(name) if self._watched(name) else None
            read = self._cursors_read.get(name)
            keeping = self.capacity > 0
        covering = cast(Covering, watcher) if self._is(watcher, Covering) else None
        if not keeping or read is None or covering is None:
            return False
        since = covering.inbox_covered_since()
        return since is not None and since <= read

    def covered_folders(self, name: str) -> frozenset[str]:
        """The folders of mailbox ``name`` that need no STATUS to know they are unchanged
        since their cursors, for the reasons ``inbox_covered`` gives INBOX's: INBOX in IDLE,
        and, where the server offers NOTIFY, the others the watch's NOTIFY has covered
        since before the last clean pass read them.  INBOX is named "INBOX"."""
        with self._lock:
            watcher: object = self._watchers.get(name) if self._watched(name) else None
            read = self._cursors_read.get(name)
            keeping = self.capacity > 0
        if not keeping or read is None:
            return frozenset()
        if isinstance(watcher, CoveringFolders):
            since = watcher.folders_covered_since()
            return frozenset(folder for folder, at in since.items() if at <= read)
        return frozenset([INBOX]) if self.inbox_covered(name) else frozenset()

    def served_by_watch(self) -> None:
        """A poll answered by the watch alone (``inbox_covered``, nothing else to ask): a
        login saved as by a kept session, and counted so."""
        with self._lock:
            self.reused += 1
        if self._on_reuse is not None:
            self._on_reuse()

    def default_folders_listed(self, name: str) -> list[str] | None:
        """Mailbox ``name``'s default folders as listed less than LIST_EVERY ago, else
        None (the next session lists them again)."""
        with self._lock:
            listed = self._listed.get(name)
        if listed is None or self._clock() - listed[0] >= LIST_EVERY:
            return None
        return list(listed[1])

    def watch(self, name: str, watcher: Watcher) -> None:
        """Mailbox ``name`` has an IDLE watcher: while it lives, the mailbox's poll sessions
        are closed after each poll instead of kept (its kept one, if any, goes now)."""
        with self._lock:
            self._watchers[name] = watcher
            kept = self._idle.pop(name, None)
        if kept is not None:
            self._logouts.close_soon([kept])  # the caller is the daemon's main loop, lock held

    def unwatch(self, name: str) -> None:
        with self._lock:
            self._watchers.pop(name, None)

    def _watched(self, name: str) -> bool:
        """Called with the lock held."""
        watcher = self._watchers.get(name)
        return watcher is not None and watcher.ended is None

    def expire(self) -> int:
        """Log out the sessions unused for ``idle_timeout``, on a thread of their own (a slow
        server must not hold up the caller, the daemon's main loop).  Returns how many."""
        cutoff = self._clock() - self.idle_timeout
        with self._lock:
            stale = [name for name, kept in self._idle.items() if kept.since <= cutoff]
            gone = [self._idle.pop(name) for name in stale]
        if gone:
            log.debug("imap.sessions_expired", count=len(gone))
            self._logouts.close_soon(gone)
        return len(gone)

    def resize(self, capacity: int) -> int:
        """Keep at most ``capacity`` sessions from now on; the least recently used beyond it
        are logged out on a thread of their own (the caller is the daemon's main loop).
        Returns how many."""
        with self._lock:
            self.capacity = capacity
            gone = []
            while len(self._idle) > capacity:
                gone.append(self._idle.popitem(last=False)[1])
        if gone:
            self._logouts.close_soon(gone)
        return len(gone)

    def close_all(self, within: float = SHUTDOWN_LOGOUT_WITHIN) -> None:
        """At shutdown: LOGOUT every kept session, all of them within ``within`` seconds;
        sessions checked in later are closed at once."""
        with self._lock:
            self._closed = True
            gone = list(self._idle.values())
            self._idle.clear()
        deadline = self._clock() + within
        for kept in gone:
            # Past the deadline, the socket is shut without a goodbye: the server copes.
            _close(kept.session, max(0.0, min(LOGOUT_WITHIN, deadline - self._clock())))

    def __len__(self) -> int:
        with self._lock:
            return len(self._idle)

    def kept(self) -> list[str]:
        with self._lock:
            return list(self._idle)

    def _is(self, watcher: object, protocol: type) -> bool:
        # isinstance() against a runtime Protocol looks at every attribute, about 15 us each
        # time: more than the rest of an unchanged mailbox's poll.  By type, once.
        key = (type(watcher), protocol)
        found = self._kinds.get(key)
        if found is None:
            found = self._kinds[key] = issubclass(key[0], protocol)
        return found

    # --- for _Borrowed -------------------------------------------------------------------------

    def _login(self, box: MailboxConfig, max_bytes: int) -> MailSession:
        with self._lock:
            self.logins += 1
        try:
            session = self._opener(box, max_bytes)
        except RemoteError as err:
            self.observe_login(err.kind)
            raise
        except Exception:
            self.observe_login("internal")
            raise
        self.observe_login("ok")
        return session

    def _default_folders(
        self, borrowed: _Borrowed, list_them: Callable[[], list[str]]
    ) -> list[str]:
        name = borrowed.box.name
        with self._lock:
            listed = self._listed.get(name)
        if listed is not None and self._clock() - listed[0] < LIST_EVERY:
            return list(listed[1])
        found = list_them()
        with self._lock:
            self._listed[name] = (self._clock(), list(found))
        return found

    def _note_folder(self, name: str, folder: str, *, refused: bool) -> None:
        with self._lock:
            if refused:
                self._refused.setdefault(name, set()).add(folder)
            elif folder in self._refused.get(name, ()):
                self._refused[name].discard(folder)

    def _known_refused(self, name: str, folder: str) -> bool:
        with self._lock:
            return folder in self._refused.get(name, ())

    def observe_login(self, outcome: str) -> None:
        """Count a login made elsewhere (an IDLE watcher) in the same metric."""
        if self._on_login is not None:
            self._on_login(outcome)

    def _check_in(self, borrowed: _Borrowed, session: MailSession | None, usable: bool) -> None:
        if borrowed.lender is not None:
            with self._lock:
                if self._out.get(borrowed.box.name) is borrowed:
                    del self._out[borrowed.box.name]
            lender, borrowed.lender = borrowed.lender, None
            lender.give_back(usable and session is not None, borrowed.inbox_uidnext, borrowed.seen)
            return
        evicted: list[_Idle] = []
        with self._lock:
            if self._out.get(borrowed.box.name) is borrowed:
                del self._out[borrowed.box.name]
            keep = (
                session is not None
                and usable
                and not borrowed.retired
                and borrowed.epoch == self._discards.get(borrowed.box.name, 0)
                and not self._closed
                and self.capacity > 0
                and not self._watched(borrowed.box.name)
            )
            if keep:
                assert session is not None
                old = self._idle.pop(borrowed.box.name, None)
                if old is not None:
                    evicted.append(old)
                self._idle[borrowed.box.name] = _Idle(
                    session, borrowed.box, borrowed.max_bytes, self._clock()
                )
                while len(self._idle) > self.capacity:
                    evicted.append(self._idle.popitem(last=False)[1])
        if session is not None and not keep:
            _close(session, LOGOUT_WITHIN)
        for kept in evicted:
            _close(kept.session, LOGOUT_WITHIN)


def _close_each(gone: list[_Idle], seconds: float) -> None:
    for kept in gone:
        _close(kept.session, seconds)


LOGOUT_THREADS = 4  # a handover of a thousand kept sessions must not start a thousand threads


class _Logouts:
    """LOGOUT on a few background threads (started at the first): a slow server must not
    hold up the caller.  One per session cache, which owns it."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def close_soon(self, gone: list[_Idle]) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(LOGOUT_THREADS, thread_name_prefix="imap-logout")
            pool = self._pool
        pool.submit(_close_each, gone, LOGOUT_WITHIN)


class _Borrowed:
    """A session for the length of one poll (a MailSession).

    See ``_call`` for what a reused connection gets that a fresh one does not: one retry on
    a fresh login.  After that, errors are the poll's, as on any connection, and a session
    left in an unknown state by one is not kept.
    """

    def __init__(
        self,
        cache: SessionCache,
        box: MailboxConfig,
        max_bytes: int,
        session: MailSession,
        *,
        reused: bool,
    ) -> None:
        self._cache = cache
        self.box = box
        self.max_bytes = max_bytes
        self._session: MailSession | None = session
        self.reused = reused  # kept from an earlier poll, not retried on a fresh login yet
        self._failed = False
        self.retired = False  # discarded while out: closed at check-in
        self.epoch = 0  # the mailbox's discard count when the poll began
        self.lender: Lender | None = None  # the IDLE watcher whose connection this is
        self.inbox_uidnext: int | None = None  # INBOX's UIDNEXT as the poll last saw it
        self.seen: dict[str, int | None] = {}  # each folder's, for the watch's NOTIFY

    def _call(
        self,
        command: Callable[[MailSession], T],
        *,
        stateless: bool = False,
        folder: str | None = None,
    ) -> T:
        """Run ``command``.  On a reused connection, a command that needs no state of the
        session (STATUS, EXAMINE, LIST) and fails, whatever the error, runs again once on a
        fresh login: the kept connection may have died between polls, or the server may
        hold stale state for it (Dovecot answers "Mailbox was deleted under us" to a kept
        connection after a folder was rebuilt).  Not a NO for a ``folder`` that a fresh
        connection was refused too: a folder that does not exist is refused on any
        connection, and a login per poll for it would undo what keeping saves."""
        session = self._session
        if session is None:
            raise RuntimeError("the session was closed")
        try:
            result = command(session)
        except Exception as err:
            refused = (
                folder is not None and isinstance(err, RemoteConfigError) and _looks_alive(session)
            )
            if refused and not self.reused:
                assert folder is not None
                self._cache._note_folder(self.box.name, folder, refused=True)
            known = refused and self._cache._known_refused(self.box.name, folder or "")
            if self.reused and stateless and not known:
                log.info(
                    "imap.kept_session_failed", mailbox=self.box.name, error=type(err).__name__
                )
                self.reused = False  # once: from here on the session is a fresh one
                self._session = None
                if self.lender is not None:
                    # A NO it answered leaves the watch's connection fine: back into IDLE
                    # (dropping it would cost the watch a login and a wake every poll where
                    # a server refuses STATUS of some folder); anything else: it logs in anew.
                    lender, self.lender = self.lender, None
                    lender.give_back(refused, self.inbox_uidnext, self.seen)
                else:
                    _close(session, 0.1)
                self._session = self._cache._login(self.box, self.max_bytes)
                return self._call(command, stateless=stateless, folder=folder)
            # The server said no (a folder that does not exist): the connection is fine and
            # kept.  Anything else leaves it in a state nobody knows: it is not kept.
            answered = isinstance(err, RemoteConfigError) and _looks_alive(session)
            self._failed = self._failed or not answered
            raise
        if folder is not None:
            self._cache._note_folder(self.box.name, folder, refused=False)
        return result

    def capabilities(self) -> frozenset[str]:
        return self._call(lambda s: s.capabilities(), stateless=True)

    def folders(self) -> list[FolderInfo]:
        return self._call(lambda s: s.folders(), stateless=True)

    def default_folders(self) -> list[str]:
        return self._cache._default_folders(
            self, lambda: self._call(lambda s: s.default_folders(), stateless=True)
        )

    def examine(self, folder: str) -> FolderStatus:
        return self._seen(self._call(lambda s: s.examine(folder), stateless=True, folder=folder))

    def status(self, folder: str) -> FolderStatus:
        return self._seen(self._call(lambda s: s.status(folder), stateless=True, folder=folder))

    def _seen(self, status: FolderStatus) -> FolderStatus:
        """Remember each folder's UIDNEXT: mail past it, come during the poll, wakes the
        next one when the connection goes back into IDLE (INBOX) and NOTIFY (the others)."""
        if status.name.upper() == INBOX:
            self.inbox_uidnext = status.uidnext
        self.seen[status.name] = status.uidnext
        return status

    def uids_from(self, first_uid: int, last_uid: int | None = None) -> list[int]:
        return self._call(lambda s: s.uids_from(first_uid, last_uid))

    def fetch(self, uids: list[int]) -> list[FetchedMessage]:
        return self._call(lambda s: s.fetch(uids))

    def fetch_message_ids(self, uids: list[int]) -> dict[int, bytes]:
        return self._call(lambda s: s.fetch_message_ids(uids))

    def close(self) -> None:
        """Check in: kept for the next poll unless a command failed on it."""
        session, self._session = self._session, None
        self._cache._check_in(self, session, usable=not self._failed)


class DaemonSessions(SessionCache):
    """The daemon's cache: logins counted in its metrics, tuned by ``[sync]``, and
    addressed by the daemon's source keys, (kind, name), of which only mailboxes hold one."""

    def __init__(self, sync: SyncConfig, metrics: Metrics, opener: Opener) -> None:
        super().__init__(
            opener,
            capacity=sync.keep_connections,
            idle_timeout=sync.connection_idle_timeout,
            on_login=lambda outcome: metrics.imap_logins.labels(outcome).inc(),
            on_reuse=metrics.imap_reused.inc,
        )

    def tune(self, sync: SyncConfig) -> None:
        """A reloaded config: a lower keep_connections closes the excess now (an admin lowers
        it because the server has too many connections); a new timeout applies from the next
        expiry round."""
        self.idle_timeout = sync.connection_idle_timeout
        self.resize(sync.keep_connections)

    def discard_source(self, key: tuple[str, str]) -> None:
        if key[0] == "mailbox":
            self.discard(key[1])

    def watch_source(self, key: tuple[str, str], watcher: Watcher) -> None:
        if key[0] == "mailbox":
            self.watch(key[1], watcher)

    def unwatch_source(self, key: tuple[str, str]) -> None:
        if key[0] == "mailbox":
            self.unwatch(key[1])
