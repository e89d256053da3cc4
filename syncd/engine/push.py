"""IMAP IDLE on INBOX: a thread per mailbox that wakes the scheduler when mail arrives.

The watcher only listens; the sync itself runs on the scheduler's connection, so a
message is read, matched and committed exactly as on a poll.  IDLE is left and entered
again every few minutes: servers drop IDLE after 30 minutes (RFC 2177 asks clients to
renew within 29), and a NOOP round trip is how a connection that died silently is found.

The server is a peer we do not control: whatever it sends, and whatever that raises
(a MemoryError from a literal of 3 GB, a parser bug), the watcher drops the connection
and reconnects with the waits of the ``RECONNECT`` retry policy; after an internal error
(a bug, a library that changed) it waits the longest of them straight away.  It only
ends on purpose (stop, login refused, no IDLE), and says why in ``ended``; the daemon
restarts a watcher that ended any other way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from syncd.config import MailboxConfig
from syncd.connectors.imap import ImapSession
from syncd.connectors.retry import RECONNECT
from syncd.errors import CredentialsError, InternalError, RemoteError
from syncd.secrets import read_secret

log = structlog.get_logger("syncd.push")

RENEW_EVERY = 5 * 60.0  # seconds in IDLE before DONE + NOOP + IDLE again
WAIT_STEP = 5.0  # how long one wait lasts: the watcher notices a stop request this quickly
RECONNECT_MAX = RECONNECT.cap


class IdleWatcher:
    def __init__(
        self,
        box: MailboxConfig,
        on_new_mail: Callable[[str], None],
        *,
        renew_every: float = RENEW_EVERY,
        wait_step: float = WAIT_STEP,
    ) -> None:
        self.box = box
        self._on_new_mail = on_new_mail
        self._renew_every = renew_every
        self._wait_step = wait_step
        self.renewals = 0  # IDLE left and entered again with a NOOP in between
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"idle-{box.name}", daemon=True)
        self.supported: bool | None = None  # unknown until the first connection
        # Why the thread ended on purpose ("stopped", "login refused", "no IDLE"); None
        # while it runs, and if it died of something it could not catch.
        self.ended: str | None = None
        self.crashes = 0  # connections dropped after an unexpected exception

    def start(self) -> IdleWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        structlog.contextvars.bind_contextvars(mailbox=self.box.name, folder="INBOX")
        self.ended = self._watch()
        log.info("idle.stopped", reason=self.ended)

    def _watch(self) -> str:
        """Connect, IDLE, reconnect, until told to stop; returns why it stopped."""
        failures = 0
        first = True
        while not self._stop.is_set():
            session: ImapSession | None = None
            delay = 0.0
            try:
                session = ImapSession.open(
                    self.box, lambda: read_secret(self.box, what=f"mailbox {self.box.name}"),
                    max_bytes=0, should_stop=self._stop.is_set,
                )  # fmt: skip
                self.supported = session.idle_start()
                if not self.supported:
                    return "no IDLE"
                failures = 0
                if not first:
                    self._on_new_mail(self.box.name)  # mail may have come while we were away
                first = False
                log.debug("idle.started")
                self._listen(session)
                continue
            except CredentialsError:
                # The scheduler owns retries of a refused login (at most hourly); the watcher
                # starts again once a sync succeeds.
                return "login refused"
            except InternalError as err:
                # Its message names the type and the place only, never the data.
                self.crashes += 1
                delay = RECONNECT.cap  # the same bug would come back at once: do not hammer
                log.error("idle.crashed", error=err.message, retry_in=round(delay, 1))
            except RemoteError as err:
                failures += 1
                delay = RECONNECT.wait(failures, err)
                log.warning("idle.lost", error=str(err), retry_in=round(delay, 1))
            except Exception as err:
                # The type only: the message of an exception raised on the server's data may
                # quote that data.
                self.crashes += 1
                failures += 1
                delay = RECONNECT.wait(failures, err)
                log.error("idle.crashed", error=type(err).__name__, retry_in=round(delay, 1))
            finally:
                if session is not None:
                    session.close()
            self._stop.wait(delay)
        return "stopped"

    def _listen(self, session: ImapSession) -> None:
        waited = 0.0
        while not self._stop.is_set():
            if session.idle_wait(self._wait_step):
                session.idle_done()
                self._on_new_mail(self.box.name)
                session.idle_start()
                waited = 0.0
                continue
            waited += self._wait_step
            if waited >= self._renew_every:
                session.idle_done()
                session.idle_start()
                self.renewals += 1
                waited = 0.0
