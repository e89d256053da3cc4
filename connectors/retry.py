"""The one retry policy of syncd's connector edge.

Only a ``TransientError`` (a timeout, a reset, a server restarting) is worth trying again
soon; a refused connection, a refused login, settings that do not fit the server and our
own bugs (``InternalError``) go straight to the caller, whose scheduler decides when to
look again.  Attempts are bounded, waits grow exponentially with full jitter (so that the
sources on one server do not return in step), a server's ``Retry-After`` is honoured, and
a wait ends as soon as the caller is told to stop: SIGTERM is never held up by a retry.

The edges and their budgets are named here, so one module says how syncd retries:

- ``LOGIN``: connecting and logging in to IMAP.
- ``REQUEST``: one CalDAV request (every HTTP exchange is idempotent: PROPFIND, REPORT,
  GET, PUT of the same text, DELETE).
- ``PASS``: a mailbox pass re-opened from the committed cursor after the connection was
  lost mid-pass; an IMAP command cannot be retried on a connection that died, so the
  session is the unit of retry for IMAP operations.
- ``RECONNECT``: the IDLE watchers, which never give up on their own and only borrow the
  waits (``wait``) for their reconnects.
- ``ONCE``: an IDLE watcher's login: one try, since the push hub schedules the next one
  itself instead of holding one of its few threads in a wait.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, TypeVar

from syncd.errors import TransientError

if TYPE_CHECKING:
    from tenacity import RetryCallState

T = TypeVar("T")
StopCheck = Callable[[], bool]


def never() -> bool:
    return False


_SECONDS = re.compile(r"[0-9]+")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """An HTTP Retry-After header (delta-seconds or an HTTP date) as seconds from now; None
    if absent or unreadable.  The one parser of syncd: token endpoints, CalDAV servers and
    webhook receivers all answer with it, and a header never raises."""
    if not value:
        return None
    value = value.strip()[:100]
    # Not str.isdigit(): "\xb2" (a latin-1 header byte, as http.client decodes them) is one
    # for it, and int() refuses it.
    if _SECONDS.fullmatch(value):
        return float(min(int(value), 10**9))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class _Interrupted(Exception):
    """Raised out of a wait when the caller was told to stop."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int  # calls in all, the first included
    base: float  # seconds: the ceiling of the first wait, doubled after each failure
    cap: float  # seconds: the longest wait
    # A server asking for a longer pause than this is not kept waiting on inline: the
    # error goes to the scheduler, whose backoff honours Retry-After.
    max_retry_after: float = 30.0
    step: float = 0.2  # seconds between stop checks during a wait

    def retryable(self, err: BaseException) -> bool:
        if not isinstance(err, TransientError):
            return False
        return err.retry_after is None or err.retry_after <= self.max_retry_after

    def wait(
        self, failures: int, err: BaseException | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1 for the first)."""
        ceiling = min(self.cap, self.base * 2 ** min(max(failures - 1, 0), 30))
        delay = (rng or random).uniform(0, ceiling)
        retry_after = err.retry_after if isinstance(err, TransientError) else None
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after))
        return delay

    def pause(self, seconds: float, should_stop: StopCheck = never) -> bool:
        """Sleep up to ``seconds``; False when cut short because the caller must stop."""
        deadline = time.monotonic() + seconds
        while not should_stop():
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(self.step, left))
        return False

    def call(
        self,
        fn: Callable[[], T],
        *,
        should_stop: StopCheck = never,
        on_retry: Callable[[BaseException, float], None] | None = None,
    ) -> T:
        """``fn()``, called again after each retryable failure until it succeeds, the
        attempts run out or ``should_stop()``; then the last error is raised as it was.

        The first call is made here: most succeed, or fail for good, and tenacity's import
        (0.01 s, issue #20: an unchanged `syncd sync` logs in once) waits for a failure
        worth retrying, which tenacity then takes as its first attempt's outcome."""
        try:
            return fn()
        except BaseException as err:
            if not self.retryable(err):
                raise
            first = [err]

        def attempt() -> T:
            if first:
                raise first.pop()
            return fn()

        return self._retrying(attempt, should_stop, on_retry)

    def _retrying(
        self,
        fn: Callable[[], T],
        should_stop: StopCheck,
        on_retry: Callable[[BaseException, float], None] | None,
    ) -> T:
        from tenacity import Retrying, retry_if_exception, stop_after_attempt
        from tenacity.stop import stop_base

        class StopRequested(stop_base):
            def __call__(self, retry_state: RetryCallState) -> bool:
                return should_stop()

        last: list[BaseException] = []

        def before_sleep(state: RetryCallState) -> None:
            assert state.outcome is not None
            err = state.outcome.exception()
            assert err is not None
            last[:] = [err]
            if on_retry is not None:
                on_retry(err, state.upcoming_sleep)

        def sleep(seconds: float) -> None:
            if not self.pause(seconds, should_stop):
                raise _Interrupted

        def wait(state: RetryCallState) -> float:
            err = state.outcome.exception() if state.outcome is not None else None
            return self.wait(state.attempt_number, err)

        retrying = Retrying(
            retry=retry_if_exception(self.retryable),
            stop=stop_after_attempt(self.attempts) | StopRequested(),
            wait=wait,
            sleep=sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(fn)
        except _Interrupted:
            raise last[0] from None


LOGIN = RetryPolicy(attempts=3, base=0.5, cap=5.0)
REQUEST = RetryPolicy(attempts=3, base=0.25, cap=2.0)
PASS = RetryPolicy(attempts=2, base=0.5, cap=2.0)
RECONNECT = RetryPolicy(attempts=0, base=1.0, cap=300.0)  # waits only: the watcher loops
ONCE = RetryPolicy(attempts=1, base=0.0, cap=0.0)  # the push hub schedules its own retries
