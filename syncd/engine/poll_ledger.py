"""The bookkeeping of the daemon's polls that found nothing new, written for all sources at
once: an unchanged mailbox costs one STATUS a folder on its kept connection and no database
write of its own (issue #20).

A poll asks the source first whether anything changed (``Source.unchanged``: no database,
the cursors it remembers from its last clean pass against the server's STATUS).  Nothing:
the poll is over, and its "last attempt" and "last success" wait here until the heartbeat
thread writes every waiting one in one statement (``flush``), once the oldest has waited a
few beats.  Anything else, or a source that cannot tell, is the full pass, with its lease
renewed and every write fenced.  Where the watch on INBOX answers alone (nothing else to
ask the server), the daemon's loop polls on its own thread (``ask=False``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import Connection, Engine

from syncd.logs import get_logger
from syncd.store.database import transaction
from syncd.store.state import polls_succeeded

log = get_logger("syncd.polls")

Key = tuple[str, str]  # (kind, name)
LEDGER_WAIT = 10.0  # seconds: see ``ledger_wait``


def ledger_wait(interval: float) -> float:
    """Seconds a quiet poll waits for its write: a few beats, never a whole interval (so
    that "last success" in `syncd status` is never a poll behind)."""
    return min(LEDGER_WAIT, interval)


class Checkable(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def name(self) -> str: ...

    def unchanged(self, *, ask: bool = True) -> list[str] | None: ...


class PollLedger:
    """Unchanged polls waiting to be written.  Thread-safe: workers note, the heartbeat
    thread flushes."""

    def __init__(
        self,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        wait: float = 0.0,
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._waiting: dict[Key, tuple[list[str], datetime]] = {}
        # Seconds a noted poll may wait for a flush that asks only for what is ``due``: a
        # write every few beats rather than every one (each is a transaction, a round trip
        # or three), and "last success" that much behind at most.
        self.wait = wait
        self._oldest: float | None = None  # time.monotonic() of the oldest poll waiting

    def quiet(self, source: Checkable, *, ask: bool = True) -> bool:
        """Poll ``source`` the cheap way: True when it found nothing new (noted here for
        the next flush); False when the full pass must run, or (``ask`` False) when
        telling would take a round trip to the server."""
        # (Asked the usual way without the keyword: a Checkable may predate it.)
        places = source.unchanged(ask=False) if not ask else source.unchanged()
        if places is None:
            return False
        with self._lock:
            self._waiting[(source.kind, source.name)] = (places, self._clock())
            if self._oldest is None:
                self._oldest = time.monotonic()
        return True

    def forget(self, key: Key) -> None:
        with self._lock:
            self._waiting.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)

    def flush(
        self,
        bind: Engine | Connection,
        held: Collection[Key],
        before: Callable[[Connection], None] | None = None,
        *,
        due: bool = False,
    ) -> int:
        """Write the waiting polls of the sources in ``held`` (a source that passed to
        another daemon since is its holder's to record); the number written.  With ``due``
        (the heartbeat's), only once the oldest has waited ``wait`` seconds.  A failed
        write keeps them for the next flush, unless newer ones came meanwhile."""
        with self._lock:
            oldest = self._oldest
            if due and (oldest is None or time.monotonic() - oldest < self.wait):
                return 0
            waiting, self._waiting, self._oldest = self._waiting, {}, None
        rows = [
            (kind, name, places, at)
            for (kind, name), (places, at) in waiting.items()
            if (kind, name) in held
        ]
        if not rows:
            return 0
        try:
            with transaction(bind) as conn:
                if before is not None:
                    before(conn)
                polls_succeeded(conn, rows)
        except Exception as err:  # the database may be down: the next beat tries again
            log.warning("polls.not_recorded", polls=len(rows), error=type(err).__name__)
            with self._lock:
                for key, value in waiting.items():
                    self._waiting.setdefault(key, value)
                if oldest is not None:
                    self._oldest = min(oldest, self._oldest or oldest)
            return 0
        return len(rows)
