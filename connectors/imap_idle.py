"""One IMAP connection in IDLE on INBOX (RFC 2177), read without a thread of its own.

Where the server offers NOTIFY (RFC 5465), the connection also hears of new mail in the
mailbox's other captured folders (imap_notify.py): a poll then needs no STATUS for them.

imapclient logs in and opens the folder (blocking, on one of the push hub's few workers);
from then on this module owns the socket: the hub's selector says when it is readable and
``read_ready`` takes what is there without ever blocking.  imaplib cannot do that: its
reader blocks until a line is complete and keeps up to a megabyte per line.

What a server may cost us is bounded whatever it sends: a line longer than ``MAX_LINE``,
more than ``FLOOD_BYTES`` within ``FLOOD_WINDOW`` seconds (a legitimate IDLE says a few
short lines a minute) or anything after a BYE and the connection is dropped, to be opened
again after a backoff.  A read takes at most ``READ_PER_WAKE`` bytes, so one endless stream
cannot hold the selector thread from the other connections.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from syncd.config import MailboxConfig
from syncd.connectors import retry
from syncd.connectors.base import INBOX
from syncd.connectors.imap import ImapSession, classify
from syncd.connectors.imap_notify import Notified
from syncd.errors import RemoteError, TransientError
from syncd.logs import get_logger

FOLDER = INBOX
MAX_LINE = 64 * 1024  # bytes: the longest line kept while waiting for its end
READ_CHUNK = 16 * 1024  # bytes per recv; a TLS record is at most 16 KiB
READ_PER_WAKE = 64 * 1024  # bytes read from one connection before the others get a turn
FLOOD_BYTES = 1024 * 1024  # bytes a server may send in IDLE within FLOOD_WINDOW
FLOOD_WINDOW = 60.0  # seconds

_NEW_MAIL = re.compile(rb"^\* \d+ (?:EXISTS|RECENT)\b", re.IGNORECASE)
_BYE = re.compile(rb"^\* BYE\b", re.IGNORECASE)
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
_tags = itertools.count(1)
log = get_logger("syncd.imap")


class _Refused(Exception):
    """The server answered NO or BAD to a command it may refuse (NOTIFY SET)."""


class IdleConnection:
    """A logged-in connection with INBOX open, in IDLE between ``enter_idle`` and ``renew``.

    Not thread-safe: the hub hands it to one thread at a time (its selector thread while in
    IDLE, a worker for the blocking steps).
    """

    def __init__(self, session: ImapSession, config: MailboxConfig) -> None:
        self._session = session
        imap = session.client._imap
        self._imap = imap
        self._sock = session.client.socket()
        self._timeout = float(config.timeout)
        self._name = config.name
        self._where = f"mailbox {config.name} folder {FOLDER}"
        self._buffer = bytearray()
        self._idle_tag: bytes | None = None
        self._window_start = time.monotonic()
        self._window_bytes = 0
        self._closed = False
        self._uidnext: int | None = None  # INBOX's UIDNEXT when IDLE was last entered
        # INBOX's (UIDVALIDITY, UIDNEXT) at login: whether a mailbox taken over from another
        # daemon has mail its cursor has not seen, without a poll of its own.
        self.opened_at: tuple[int | None, int | None] = (None, None)
        # The other folders under NOTIFY (None: the server has none, or refused it), whether
        # it is in force on the server now (not while lent: imaplib must not meet its STATUS
        # lines), and news of them heard on the way out of IDLE, for ``reenter_idle``.
        self._notified: Notified | None = None
        self._notifying = False
        self._notify_news = False
        self._carried = False

    @classmethod
    def open(
        cls,
        config: MailboxConfig,
        secret: Callable[[], str],
        on_login: Callable[[str], None] | None = None,
        notify: bool = True,
    ) -> IdleConnection | None:
        """Log in (one try), open INBOX read-only and, with ``notify`` where the server offers
        NOTIFY, ask it to announce the other captured folders; None when the server has no
        IDLE.  Blocking, up to the mailbox's timeout per step.  ``on_login`` hears the
        login's outcome ("ok" or the error's kind), for the daemon's login metric."""
        try:
            session = ImapSession.open(config, secret, max_bytes=0, policy=retry.ONCE)
        except RemoteError as err:
            _observe(on_login, err.kind)
            raise
        except Exception:
            _observe(on_login, "internal")
            raise
        _observe(on_login, "ok")
        try:
            caps = session.capabilities()
            if "IDLE" not in caps:
                session.close()
                return None
            folders: list[str] = []
            if notify and "NOTIFY" in caps:
                folders = config.folders or session.default_folders()
            opened = session.examine(FOLDER)
            connection = cls(session, config)
            connection._uidnext = opened.uidnext
            connection.opened_at = (opened.uidvalidity, opened.uidnext)
            connection._take_over()
            notified = Notified(folders)
            if notified.folders:  # INBOX alone: IDLE says it all
                connection._notified = notified
                connection._set_notify()
        except BaseException:
            session.close()
            raise
        return connection

    # --- the selector's side (never blocks) -------------------------------------------------

    def fileno(self) -> int:
        fd: int = self._sock.fileno()
        return fd

    def pending(self) -> bool:
        """Bytes already decrypted by TLS and waiting: the selector cannot see those."""
        return isinstance(self._sock, ssl.SSLSocket) and self._sock.pending() > 0

    def covered(self) -> Mapping[str, float]:
        """The folders other than INBOX that NOTIFY covers, each with since when
        (time.monotonic()): any new message there is reported as INBOX's are."""
        notified = self._notified
        return {} if notified is None else notified.covered

    def read_ready(self) -> bool:
        """Read what the server sent, at most READ_PER_WAKE bytes; True when INBOX (or a
        folder under NOTIFY) got mail.

        Raises TransientError when the connection must be dropped (closed, BYE, a flood).
        """
        got = 0
        with self._network():
            while got < READ_PER_WAKE:
                try:
                    data = self._sock.recv(READ_CHUNK)
                except _WOULD_BLOCK:
                    break
                if not data:
                    raise TransientError(f"{self._where}: the server closed the connection")
                got += len(data)
                self._take(data)
        return self._lines()

    # --- a worker's side (blocking, bounded by the timeout) -----------------------------------

    def enter_idle(self) -> bool:
        """Send IDLE and wait for the server to accept it; True when mail was announced on
        the way.  Afterwards the socket is non-blocking, for the selector."""
        self._sock.settimeout(self._timeout)
        tag = _new_tag()
        new_mail = self._command(tag, b"IDLE", continuation=True)
        self._idle_tag = tag
        new_mail |= self._lines()  # what came in the same packet as the "+"
        self._sock.setblocking(False)
        return new_mail

    def renew(self) -> bool:
        """DONE, NOOP, IDLE again: servers drop an IDLE older than 30 minutes, and the NOOP
        round trip finds a connection that died silently.  True when mail was announced."""
        assert self._idle_tag is not None, "renew() outside IDLE"
        self._sock.settimeout(self._timeout)
        tag, self._idle_tag = self._idle_tag, None
        with self._network():
            self._sock.sendall(b"DONE\r\n")
        new_mail = self._response(tag)
        if self._notified is not None:
            # NOTIFY SET STATUS is the round trip, and each folder's STATUS with it also
            # finds mail the server did not announce (written into the folder behind its back).
            new_mail |= self._set_notify(announced=True)
        else:
            new_mail |= self._command(_new_tag(), b"NOOP")
        return self.enter_idle() or new_mail

    # --- lent to a poll (blocking, on the poll's thread) -------------------------------------

    @property
    def session(self) -> ImapSession:
        """The logged-in session under the watch, for a poll while it is out of IDLE."""
        return self._session

    def leave_idle(self) -> None:
        """DONE, and the connection is a plain session again (blocking, with the timeout):
        a poll may use it, then ``reenter_idle``.  What the server announced of INBOX on
        the way is moot: ``reenter_idle`` compares INBOX's UIDNEXT with what the poll saw."""
        assert self._idle_tag is not None, "leave_idle() outside IDLE"
        self._sock.settimeout(self._timeout)
        tag, self._idle_tag = self._idle_tag, None
        # NOTIFY off for the poll (in the same packet as DONE): its STATUS lines would meet
        # imaplib's answers.  What it said of the other folders on the way is kept: a poll
        # may not read them, and ``reenter_idle`` reports it.
        silence = _new_tag() if self._notifying else None
        self._notify_news = False
        with self._network():
            self._sock.sendall(b"DONE\r\n" + (silence + b" NOTIFY NONE\r\n" if silence else b""))
        self._response(tag)
        if silence is not None:
            self._response(silence)
            self._notifying = False
        self._carried = self._notify_news
        # imaplib reads the poll's answers from here on: nothing of ours may stay behind.
        self._buffer.clear()

    def reenter_idle(
        self, inbox_uidnext: int | None, seen: Mapping[str, int | None] | None = None
    ) -> bool:
        """After a poll: INBOX examined again, NOTIFY set again, IDLE again.  True when INBOX
        has mail the poll may not have seen: its UIDNEXT moved past ``inbox_uidnext``, the
        UIDNEXT the poll saw (None, when the poll did not read INBOX: past the UIDNEXT of the
        last time IDLE began), or mail was announced on the way; or a folder under NOTIFY
        has (past ``seen``, the UIDNEXT the poll read of each, else past what NOTIFY last
        said).  A poll that never reads INBOX (its folders exclude it, or it failed first)
        therefore wakes no endless round of polls."""
        status = self._session.examine(FOLDER)
        self._take_over()
        seen_inbox = inbox_uidnext if inbox_uidnext is not None else self._uidnext
        # A server without UIDNEXT cannot tell: the next scheduled poll will.
        moved = (
            seen_inbox is not None and status.uidnext is not None and status.uidnext > seen_inbox
        )
        self._uidnext = status.uidnext
        moved, self._carried = moved or self._carried, False
        if self._notified is not None:
            moved |= self._set_notify(seen)
        return self.enter_idle() or moved

    def close(self) -> None:
        """Leave without waiting for the server: DONE and LOGOUT if they fit in the socket's
        buffer (they always do), then close.  Never blocks, never raises."""
        if self._closed:
            return
        self._closed = True
        farewell = (
            (b"DONE\r\n" if self._idle_tag is not None else b"") + _new_tag() + b" LOGOUT\r\n"
        )
        with contextlib.suppress(Exception):
            self._sock.setblocking(False)
            self._sock.send(farewell)
        with contextlib.suppress(Exception):
            self._session.client.shutdown()

    # --- reading --------------------------------------------------------------------------

    def _take_over(self) -> None:
        """Take the bytes imaplib has read ahead (an EXISTS right after EXAMINE's answer):
        every later read is ours."""
        file = getattr(self._imap, "file", None)
        if file is None:
            return
        self._sock.setblocking(False)
        try:
            early: bytes = file.peek(READ_CHUNK)  # what is buffered, or one non-blocking read
        except _WOULD_BLOCK:
            early = b""
        finally:
            self._sock.settimeout(self._timeout)
        if early:
            file.read(len(early))
            self._take(early)

    def _take(self, data: bytes) -> None:
        now = time.monotonic()
        if now - self._window_start > FLOOD_WINDOW:
            self._window_start, self._window_bytes = now, 0
        self._window_bytes += len(data)
        if self._window_bytes > FLOOD_BYTES:
            raise TransientError(
                f"{self._where}: the server sent over {FLOOD_BYTES:,} bytes in IDLE within "
                f"{FLOOD_WINDOW:.0f} s (a broken or hostile server)"
            )
        self._buffer += data

    def _next_line(self) -> bytes | None:
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > MAX_LINE:
                raise TransientError(
                    f"{self._where}: the server sent a line over {MAX_LINE:,} bytes "
                    "(a broken or hostile server)"
                )
            return None
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        return line

    def _lines(self) -> bool:
        """Every complete line in the buffer, in IDLE: True when one announces new mail."""
        new_mail = False
        while (line := self._next_line()) is not None:
            new_mail |= self._untagged(line)
            if self._idle_tag is not None and line.startswith(self._idle_tag + b" "):
                raise TransientError(f"{self._where}: the server ended IDLE")
        return new_mail

    def _untagged(self, line: bytes) -> bool:
        if _BYE.match(line):
            raise TransientError(f"{self._where}: the server closed IDLE (BYE)")
        if self._notifying and self._notified is not None and self._notified.line(line):
            self._notify_news = True
            return True
        return _NEW_MAIL.match(line) is not None

    def _set_notify(
        self, seen: Mapping[str, int | None] | None = None, *, announced: bool = False
    ) -> bool:
        """NOTIFY SET for the other folders (blocking); True when one of those it covered
        has mail nobody reported (``Notified.end_set``; ``announced``: NOTIFY was on since
        the last SET).  Refused, the connection goes on without NOTIFY, as on a server that
        never offered it: polls ask STATUS again."""
        notified = self._notified
        assert notified is not None
        notified.begin_set()
        self._notifying = True  # its lines may come before its answer, and are NOTIFY's
        try:
            news = self._command(_new_tag(), notified.set_command(), may_refuse=True)
        except _Refused:
            notified.drop()
            self._notified, self._notifying = None, False
            log.info("notify.refused", mailbox=self._name)  # polls ask STATUS, as before
            return False
        # Covered from the answer on, not from the sending: a poll whose cursors were read
        # before the server ran the SET may have missed mail its STATUS answers already count.
        answered = time.monotonic()
        trusted = notified.trusted
        news |= notified.end_set(answered, seen, announced=announced)
        if trusted and not notified.trusted:
            # Mail came that no event announced (delivered straight into the folder, or by
            # another program past the server): polls ask STATUS again on this connection.
            log.info("notify.untrusted", mailbox=self._name)
        return news

    def _command(
        self, tag: bytes, command: bytes, *, continuation: bool = False, may_refuse: bool = False
    ) -> bool:
        with self._network():
            self._sock.sendall(tag + b" " + command + b"\r\n")
        return self._response(tag, continuation=continuation, may_refuse=may_refuse)

    def _response(
        self, tag: bytes, *, continuation: bool = False, may_refuse: bool = False
    ) -> bool:
        """Read (blocking) up to the answer to ``tag``, or its "+" when ``continuation``;
        True when an untagged line on the way announced new mail.  A NO or BAD raises
        _Refused when ``may_refuse``, else TransientError."""
        new_mail = False
        # A server that trickles a byte at a time never trips the socket's timeout: the
        # whole answer gets twice that, so it cannot hold one of the hub's few workers.
        deadline = time.monotonic() + 2 * self._timeout
        while True:
            line = self._next_line()
            if line is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TransientError(f"{self._where}: the server is too slow to answer")
                with self._network():
                    self._sock.settimeout(min(self._timeout, left))
                    data = self._sock.recv(READ_CHUNK)
                if not data:
                    raise TransientError(f"{self._where}: the server closed the connection")
                self._take(data)
                continue
            if continuation and line.startswith(b"+"):
                return new_mail
            if line.startswith(tag + b" "):
                status = line[len(tag) + 1 :].split(b" ", 1)[0].upper()
                if status != b"OK" and may_refuse and status in (b"NO", b"BAD"):
                    raise _Refused
                if status != b"OK":
                    text = line.decode("ascii", "replace").strip()[:200]
                    raise TransientError(f"{self._where}: the server refused: {text}")
                if continuation:
                    raise TransientError(f"{self._where}: the server ended IDLE at once")
                return new_mail
            new_mail |= self._untagged(line)

    @contextmanager
    def _network(self) -> Iterator[None]:
        """Socket failures as the errors that say what to do (a timeout: transient)."""
        try:
            yield
        except _WOULD_BLOCK:
            raise
        except (OSError, EOFError) as err:
            raise classify(err, self._where) from None


def _observe(on_login: Callable[[str], None] | None, outcome: str) -> None:
    if on_login is not None:
        with contextlib.suppress(Exception):  # a metric must not cost the connection
            on_login(outcome)


def _new_tag() -> bytes:
    """Tags of our own: imaplib's counter stays with the commands imaplib sends."""
    return b"W%d" % next(_tags)
