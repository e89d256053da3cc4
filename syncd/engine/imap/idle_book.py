"""The life of every watch the IDLE hub holds: which it holds, which wait for a login and
when the next may start, when each is next renewed or reconnected, and what a failed step
makes of a watch (the reconnect backoff; a refused login ends it; a watch stopped or dead
never comes back).

No sockets and no threads here: the hub (engine/imap/idle_hub.py) calls every method with
its lock held, from the selector thread, a worker or the daemon's side, and does the I/O.
Apart from the hub so that these rules read in one place, away from the selector's
plumbing.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque

from syncd.connectors.retry import RECONNECT
from syncd.engine.imap.idle_watch import OPEN, Watch, gone
from syncd.errors import CredentialsError, InternalError, RemoteError
from syncd.logs import get_logger

log = get_logger("syncd.push")

STABLE_AFTER = 60.0  # seconds up after which a connection's past failures are forgotten


class LoginPace:
    """At most ``rate`` logins started per second, with a burst of ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait(self) -> float:
        """Seconds until the next login may start."""
        return max(0.0, (1.0 - self._tokens) / self._rate)


class WatchBook:
    """Every method is called with the hub's lock held."""

    def __init__(self, *, logins: int, connects_per_second: float) -> None:
        self._logins = logins  # at once: the hub's other workers stay free for renewals
        self._pace = LoginPace(connects_per_second, logins)
        self.watches: set[Watch] = set()
        self._queue: deque[Watch] = deque()  # waiting for a login slot, oldest first
        self._timers: list[tuple[float, int, Watch]] = []  # (due, seq, watch) heap
        self._seq = itertools.count()
        # Watches marked dead since the daemon last asked (``take_dead``): it revives those,
        # rather than asking every watch whether it is alive at every beat.
        self._died: list[Watch] = []
        self.logging_in = 0

    def add(self, watch: Watch) -> None:
        self.watches.add(watch)
        self._queue.append(watch)

    def open_count(self) -> int:
        return sum(1 for w in self.watches if w.state in OPEN)

    def take_dead(self) -> list[Watch]:
        died, self._died = self._died, []
        return died

    def wait(self, longest: float) -> float:
        """Seconds until the next timer is due or the next login may start (``longest`` at
        most; may be below zero)."""
        soonest = longest
        if self._timers:
            soonest = min(soonest, self._timers[0][0] - time.monotonic())
        if self._queue and self.logging_in < self._logins:
            soonest = min(soonest, self._pace.wait())
        return soonest

    def fire(self, now: float) -> list[Watch]:
        """The timers due by ``now``: a watch waiting to reconnect queues for a login; those
        in IDLE are returned, marked renewing (the hub takes them out of its selector)."""
        renew: list[Watch] = []
        while self._timers and self._timers[0][0] <= now:
            due, _seq, watch = heapq.heappop(self._timers)
            if watch.due != due or watch.ended is not None:
                continue  # superseded, or stopped since
            if watch.state == "waiting":
                watch.state = "queued"
                self._queue.append(watch)
            elif watch.state == "idle":
                watch.state = "renewing"
                renew.append(watch)
        return renew

    def take_logins(self) -> list[Watch]:
        """The watches whose login may start now (a free slot, the pace allows), marked
        connecting."""
        starting: list[Watch] = []
        while self._queue and self.logging_in < self._logins:
            watch = self._queue[0]
            if watch.ended is not None or watch.state != "queued":
                self._queue.popleft()
                continue
            if not self._pace.take():
                break
            self._queue.popleft()
            watch.state = "connecting"
            self.logging_in += 1
            starting.append(watch)
        return starting

    def login_ended(self, watch: Watch) -> None:
        if not watch.dead:  # a dead watch's slot went with its thread
            self.logging_in -= 1

    def kill_all(self) -> None:
        """The selector thread died: every watch with it, its connection closed; the daemon
        starts them again, with its backoff."""
        for watch in self.watches:
            watch.dead = True
            self._died.append(watch)
            if watch.connection is not None:
                watch.connection.close()
                watch.connection = None
            watch._done.set()
        self.watches.clear()
        self._queue.clear()
        self._timers.clear()
        self.logging_in = 0

    def died(self, watch: Watch) -> None:
        """Killed by what no handler catches: the daemon starts it again."""
        watch.dead = True
        self._died.append(watch)
        self.finish(watch)

    # --- outcomes ---------------------------------------------------------------------------

    def drop(self, watch: Watch, err: Exception) -> None:
        """A step failed on the watch's connection: closed, then log in again after the
        backoff, unless the watch is gone meanwhile."""
        if watch.connection is not None:
            watch.connection.close()
            watch.connection = None
        if gone(watch):
            self.finish(watch)
        else:
            self.failed(watch, err)

    def failed(self, watch: Watch, err: Exception) -> None:
        """A lost connection or a failed step: wait, then log in again."""
        box = watch.box.name
        if gone(watch):  # stopped or dead meanwhile: whatever failed is moot, no reconnect
            self.finish(watch)
            return
        if isinstance(err, CredentialsError):
            # The scheduler owns retries of a refused login (at most hourly); the daemon
            # starts the watch again once a sync succeeds.
            self.end(watch, "login refused")
            return
        if watch.connected_at and time.monotonic() - watch.connected_at >= STABLE_AFTER:
            watch.failures = 0  # it had been up a while: start the backoff over
        watch.connected_at = 0.0
        watch.failures += 1
        if isinstance(err, InternalError):
            # Its message names the type and the place only, never the data.
            watch.crashes += 1
            delay = RECONNECT.cap  # the same bug would come back at once: do not hammer
            log.error("idle.crashed", mailbox=box, error=err.message, retry_in=round(delay, 1))
        elif isinstance(err, RemoteError):
            delay = RECONNECT.wait(watch.failures, err)
            log.warning(
                "idle.lost", mailbox=box, folder="INBOX", error=str(err), retry_in=round(delay, 1)
            )
        else:
            # The type only: the message of an exception raised on the server's data may
            # quote that data.
            watch.crashes += 1
            delay = RECONNECT.wait(watch.failures, err)
            log.error(
                "idle.crashed", mailbox=box, error=type(err).__name__, retry_in=round(delay, 1)
            )
        watch.state = "waiting"
        watch.reconnecting = True
        self.at(watch, time.monotonic() + delay)

    def end(self, watch: Watch, reason: str) -> None:
        if watch.ended is None:
            watch.ended = reason
        self.finish(watch)

    def finish(self, watch: Watch, *, quiet: bool = False) -> None:
        """The watch is over; ``quiet``: the caller logs it (one line for a whole close)."""
        watch.state = "ended"  # the hub's TLS set is the selector thread's own: it skips it
        self.watches.discard(watch)
        watch._done.set()
        if not quiet:
            log.info("idle.stopped", mailbox=watch.box.name, reason=watch.ended or "died")

    def at(self, watch: Watch, due: float) -> None:
        """The watch's next renewal (in IDLE) or reconnect (waiting) at ``due``."""
        watch.due = due
        heapq.heappush(self._timers, (due, next(self._seq), watch))
