"""The webhook deliverer: one worker thread per endpoint, each with its own small pool of
senders, so that a dead or slow endpoint only ever holds up itself, never capture or the
other endpoints.

A worker's round: take new events from the outbox, claim a batch of due deliveries (one
per subject), send them concurrently over keep-alive connections, store the outcomes in
one transaction.  An endpoint whose last round failed without a single success is probed
with one delivery at a time, every few seconds (doubling up to PROBE_MAX), instead of
having its whole backlog thrown at it; its first success pulls every waiting retry
forward, so a backlog drains at full speed as soon as the receiver is back.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Engine, event

from syncd.config import Config, WebhookConfig
from syncd.engine.backlog import Backlog
from syncd.errors import SyncdError, describe
from syncd.logs import get_logger
from syncd.store.events import TYPES
from syncd.webhooks import queue
from syncd.webhooks.envelope import body, envelope
from syncd.webhooks.http import NOT_STARTED, Sender, deadline_for, load_signer
from syncd.webhooks.policy import Answer, classify, failure_kind

if TYPE_CHECKING:
    from syncd.metrics import Metrics

log = get_logger("syncd.webhooks")

SENDERS = 8  # concurrent requests per endpoint
BATCH = 512  # deliveries in flight (claimed) per endpoint, at most
REFILL = 128  # claimed again when this many have room (a claim scans the endpoint's backlog)
FLUSH = 32  # outcomes stored per transaction (at most this many are sent again after a kill)
FLUSH_AFTER = 0.05  # seconds an outcome waits to be stored with others, at most
POLL = 0.2  # seconds between looks at the outbox for new events
IDLE_WAIT = 1.0  # seconds a worker with nothing due sleeps (unless woken)
PROBE_MIN = 1.0  # seconds between probes of a failing endpoint, doubling ...
PROBE_MAX = 10.0  # ... up to this: a receiver back from an outage waits at most this long
SECRET_RETRY = 60.0  # seconds before an unreadable secret is read again
PENDING_EVERY = 2.0  # seconds between updates of the pending gauge
REPAIR_EVERY = 60.0  # seconds between recomputations of which delivery of a subject is next
REVIVE_EVERY = 25  # outbox polls between looks for endpoints enabled again (5 s)
TAKE = 2000  # outbox events queued for delivery per round
TRICKLE = 16  # deliveries claimed per round while this process captures a backlog ...
TRICKLE_PAUSE = 1.0  # ... and seconds between such rounds: at most 16 a second
IDLE_IN_TRANSACTION = 10.0  # seconds a paused daemon's open transaction is kept (PostgreSQL)
START_MARGIN = 1.0  # seconds: a request starts only this long before it must be done


def lease_for(config: WebhookConfig) -> timedelta:
    """How long a claim holds unless renewed (by the database's clock): three whole
    requests' deadlines, 63 s with the default ``timeout`` of 10 s.  A batch of BATCH
    through SENDERS senders can take far longer (64 requests in a row), so a worker renews
    the claims of what it has in flight every third of this: only a dead or paused
    daemon's expire, and another daemon then sends them."""
    return timedelta(seconds=3 * deadline_for(config.timeout))


def start_window(config: WebhookConfig) -> float:
    """Seconds after a claim (or its renewal) began during which one of its requests may
    start: it is then done, answered or cut off, before the claim runs out.  Measured on
    this host's monotonic clock from before the claim's statement, which runs on while the
    process is stopped: a daemon that wakes from a pause past this sends nothing before it
    has renewed its claims, and drops those another daemon took meanwhile."""
    return lease_for(config).total_seconds() - deadline_for(config.timeout) - START_MARGIN


@dataclass
class _Failing:
    rounds: int = 0  # consecutive rounds without a success and with a retryable failure
    until: float = 0.0  # monotonic time of the next probe


@dataclass
class EndpointWorker:
    engine: Engine
    config: WebhookConfig
    daemon_id: str
    metrics: Metrics | None = None
    # The capture's backlog in this process (the daemon's): deliveries trickle while busy.
    backlog: Backlog | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _failing: _Failing = field(default_factory=_Failing)
    _rng: random.Random = field(default_factory=random.Random)
    _pending_at: float = 0.0
    _repaired_at: float = 0.0
    # event id -> monotonic time until which its request may start (the claim is ours).
    _start_by: dict[int, float] = field(default_factory=dict)
    # Outcomes stored by this worker: what `syncd sync` reports.
    delivered: int = 0
    failed: int = 0
    _deadline: float = float("inf")  # `syncd sync`: claim nothing after this (monotonic)
    # The next success pulls waiting retries forward: true at start (retries planned by a
    # daemon before this one) and whenever the endpoint starts failing.
    _recovering: bool = True

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> EndpointWorker:
        self._thread = threading.Thread(
            target=self._run, name=f"webhook-{self.config.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.wake.set()

    def join(self, timeout: float) -> bool:
        if self._thread is not None:
            self._thread.join(max(0.0, timeout))
            return not self._thread.is_alive()
        return True

    def _run(self) -> None:
        structlog.contextvars.bind_contextvars(webhook=self.config.name)
        while not self.stop_event.is_set():
            try:
                signer = load_signer(self.config)
            except SyncdError as err:
                log.error("webhook.secret_unreadable", error=describe(err))
                self._note_error(err.message)
                self.stop_event.wait(SECRET_RETRY)
                continue
            break
        else:
            return
        sender = Sender(self.config, signer)
        pool = ThreadPoolExecutor(SENDERS, thread_name_prefix=f"webhook-{self.config.name}")
        try:
            self._loop(sender, pool, until_idle=False)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            sender.close()

    def drain(self, deadline: float) -> None:
        """Deliver what is due until nothing is, or until ``deadline`` (monotonic): `syncd sync`."""
        try:
            signer = load_signer(self.config)
        except SyncdError as err:
            log.error("webhook.secret_unreadable", error=describe(err))
            return
        sender = Sender(self.config, signer)
        with ThreadPoolExecutor(SENDERS) as pool:
            try:
                self._loop(sender, pool, until_idle=True, deadline=deadline)
            finally:
                sender.close()

    # --- rounds --------------------------------------------------------------------------

    def _loop(
        self,
        sender: Sender,
        pool: ThreadPoolExecutor,
        *,
        until_idle: bool,
        deadline: float = float("inf"),
    ) -> None:
        db_failures = 0
        self._deadline = deadline
        if until_idle:  # `syncd sync` tries the endpoint once, whatever the backoff
            try:
                with self.engine.begin() as conn:
                    queue.probe_now(conn, self.config.name)
            except Exception as err:  # the database may be down: the rounds below say so
                log.warning("webhook.probe_failed", error=f"{type(err).__name__}: {str(err)[:200]}")
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            pause = self._failing.until - time.monotonic()
            if pause > 0:
                if until_idle:
                    return  # `syncd sync` does not sit out a failing endpoint's backoff
                self._update_pending()
                self.wake.wait(min(pause, IDLE_WAIT))
                self.wake.clear()
                continue
            # Cleared before the round: new events committed during it wake the next wait.
            self.wake.clear()
            # While this process captures a backlog, deliveries trickle (engine/backlog.py):
            # one small claim, then a pause; `syncd sync` delivers after its capture anyway.
            trickle = not until_idle and self.backlog is not None and self.backlog.busy()
            try:
                busy = self._round(sender, pool, limit=TRICKLE if trickle else BATCH)
                db_failures = 0
            except Exception as err:  # the database may be down: try again, slower each time
                db_failures += 1
                log.warning("webhook.round_failed", error=f"{type(err).__name__}: {str(err)[:200]}")
                self.stop_event.wait(min(30.0, 2.0**db_failures))
                continue
            if trickle:
                self.stop_event.wait(TRICKLE_PAUSE)
                continue
            if busy:
                continue
            if until_idle:
                return
            self.wake.wait(IDLE_WAIT)

    def _round(self, sender: Sender, pool: ThreadPoolExecutor, limit: int = BATCH) -> bool:
        """Keep up to BATCH deliveries in flight until nothing more is due; True when there
        may be more to do at once.  Deliveries are claimed again as soon as REFILL of them
        are done (the oldest pending event of a subject in flight is still pending, so its
        successors wait), and outcomes are stored as they come, a few at a time."""
        probing = self._failing.rounds > 0
        inflight: dict[Future[Answer], queue.Claimed] = {}
        done: list[queue.Result] = []
        first_done = 0.0
        worked = exhausted = stalled = gone = False
        lease = lease_for(self.config)
        renewed = time.monotonic()
        try:
            while not self.stop_event.is_set():
                room = (1 if probing else limit) - len(inflight)
                if (
                    not (exhausted or stalled or gone or ((probing or limit < BATCH) and worked))
                    and (room >= REFILL or not inflight)
                    and time.monotonic() < self._deadline
                ):
                    fresh = self._claim(room, trickle=limit < BATCH)
                    worked |= bool(fresh)
                    exhausted = not fresh
                    for claimed in fresh:
                        inflight[pool.submit(self._send, sender, claimed)] = claimed
                if not inflight:
                    break
                finished, _ = wait(inflight, timeout=FLUSH_AFTER, return_when=FIRST_COMPLETED)
                self._update_pending()  # also while a long round of a slow endpoint lasts
                if time.monotonic() - renewed >= lease.total_seconds() / 3:
                    # Claimed deliveries queue for a sender: a slow receiver (1 s an answer
                    # is 64 s for a batch) would let their claims expire and this daemon or
                    # another claim and send them again.
                    renewed = time.monotonic()
                    self._renew(list(inflight.values()))
                unsure: list[queue.Claimed] = []
                for future in finished:
                    if future.cancelled():
                        inflight.pop(future)
                        continue
                    answer = future.result()
                    if answer is NOT_STARTED:  # the claim may be gone: renewed, then sent
                        unsure.append(inflight.pop(future))
                        continue
                    result = queue.Result(inflight.pop(future), answer, classify(answer))
                    if not done:
                        first_done = time.monotonic()
                    done.append(result)
                    if result.kind == "delivered":
                        stalled = exhausted = False  # its subject's next event may go now
                    elif result.kind == "retry":
                        stalled = True  # claim nothing more until something succeeds
                    gone |= result.kind == "gone"
                if unsure:
                    for claimed in self._renew(unsure):
                        inflight[pool.submit(self._send, sender, claimed)] = claimed
                if done and (
                    len(done) >= FLUSH
                    or gone
                    or not inflight
                    or time.monotonic() - first_done >= FLUSH_AFTER
                ):
                    gone |= self._store(done)
                    done = []
                if gone:
                    break
        finally:
            for future in inflight:
                future.cancel()  # those not started keep their claims until stop() frees them
            if done:
                gone |= self._store(done)
        if gone:
            self.stop_event.set()  # enabled again by replay or a config change (SIGHUP)
            return False
        if stalled:
            self._failing.rounds += 1
            self._recovering = True
            ceiling = min(PROBE_MAX, PROBE_MIN * 2.0 ** (self._failing.rounds - 1))
            self._failing.until = time.monotonic() + self._rng.uniform(ceiling / 2, ceiling)
            self._expire()
            return False
        if worked and self._failing.rounds:
            log.info("webhook.recovered", after_rounds=self._failing.rounds)
            self._failing = _Failing()
        if not worked and self._failing.rounds:
            self._expire()
        return worked

    def _claim(self, room: int, *, trickle: bool = False) -> list[queue.Claimed]:
        with self.engine.begin() as conn:
            # Queueing costs about 20 us an event: while trickling, only what the next
            # rounds send is queued, so a backfill's thousands wait for it to end.
            queue.take_new(conn, self.config, limit=2 * TRICKLE if trickle else TAKE)
        if time.monotonic() - self._repaired_at > REPAIR_EVERY:
            # A safety net: whatever left a subject without its ready delivery (a bug, a
            # hand-edited row) holds it up for a minute at most.
            self._repaired_at = time.monotonic()
            with self.engine.begin() as conn:
                queue.repair_ready(conn, self.config.name)
        began = time.monotonic()  # before the statement: the claim's end is later than this
        with self.engine.begin() as conn:
            claimed = queue.claim(
                conn, self.config.name, self.daemon_id, limit=room, lease=lease_for(self.config)
            )
        start_by = began + start_window(self.config)
        for c in claimed:
            self._start_by[c.event_id] = start_by
        self._update_pending()
        return claimed

    def _renew(self, claims: list[queue.Claimed]) -> list[queue.Claimed]:
        """Renew ``claims``; those still ours, whose requests may start again.  The others
        another daemon took (this one was paused longer than a claim lasts): never sent
        from here, and their outcomes are not stored."""
        if not claims:
            return []
        began = time.monotonic()
        with self.engine.begin() as conn:
            held = queue.renew(
                conn, self.config.name, self.daemon_id, claims, lease=lease_for(self.config)
            )
        start_by = began + start_window(self.config)
        kept = []
        for c in claims:
            if c.event_id in held:
                self._start_by[c.event_id] = start_by
                kept.append(c)
            else:
                self._start_by.pop(c.event_id, None)
        if len(kept) < len(claims):
            log.warning("webhook.claims_lost", deliveries=len(claims) - len(kept))
        return kept

    def _store(self, results: list[queue.Result]) -> bool:
        """Record outcomes; True when the endpoint said 410 Gone (and is now disabled)."""
        name = self.config.name
        for r in results:
            self._start_by.pop(r.claimed.event_id, None)
        with self.engine.begin() as conn:
            pull = self._recovering and any(r.kind == "delivered" for r in results)
            stored = queue.record(
                conn,
                name,
                self.daemon_id,
                results,
                retry_for=self.config.retry_seconds,
                rng=self._rng,
                pull_forward=pull,
            )
            if pull:
                self._recovering = False
            gone = next((r for r in stored.results if r.kind == "gone"), None)
            if gone is not None:
                reason = (
                    f"the receiver answered 410 Gone at {datetime.now(UTC):%Y-%m-%d %H:%M}Z "
                    f"(event {gone.claimed.event_id}): it no longer wants these events; fix "
                    f"the url (a config change enables it) or run `syncd webhooks replay {name} "
                    "--after ID`"
                )
                queue.disable(conn, name, reason)
        if stored.lost:
            # Another daemon took these claims while this one was paused: it sends them.
            log.warning("webhook.outcomes_dropped", deliveries=stored.lost)
        self.delivered += sum(1 for r in stored.results if r.kind == "delivered")
        self.failed += stored.failed
        self._report(stored.results)
        if gone is not None:
            log.error("webhook.disabled", reason=reason)
        return gone is not None

    def _send(self, sender: Sender, claimed: queue.Claimed) -> Answer:
        if claimed.broken:
            return Answer(0, snippet="the stored event is not valid JSON")
        if claimed.event is None:
            # The event left the outbox (erased by `forget`) after it was queued: nothing
            # to send, and nothing to wait for.
            return Answer(204, snippet="event erased before delivery")
        try:
            data = body(envelope(claimed.event))
        except (UnicodeError, ValueError, TypeError) as err:
            # Stored data that cannot be encoded fails alone: raised here, it failed the
            # whole round, again and again, and the endpoint delivered nothing more.
            return Answer(0, snippet=f"the stored event cannot be encoded ({type(err).__name__})")
        event_id = claimed.event_id
        return sender.post(
            str(event_id),
            data,
            may_start=lambda: time.monotonic() < self._start_by.get(event_id, 0.0),
        )

    def _expire(self) -> None:
        with self.engine.begin() as conn:
            expired = queue.expire(conn, self.config.name, self.config.retry_seconds)
        self.failed += expired
        if expired:
            log.error("webhook.expired", deliveries=expired, retry_for=self.config.retry_for)
            if self.metrics is not None:
                self.metrics.webhook_failures.labels(self.config.name, "expired").inc(expired)

    # --- reporting -----------------------------------------------------------------------

    def _report(self, results: Sequence[queue.Result]) -> None:
        name = self.config.name
        now = datetime.now(UTC)
        delivered = 0
        for r in results:
            if r.kind == "delivered":
                delivered += 1
                if self.metrics is not None and r.claimed.event is not None:
                    latency = (now - r.claimed.event.created_at).total_seconds()
                    self.metrics.webhook_latency.labels(name).observe(max(0.0, latency))
                continue
            kind = failure_kind(r.answer)
            if self.metrics is not None:
                self.metrics.webhook_failures.labels(name, kind).inc()
            fields = {
                "event_id": r.claimed.event_id,
                "status": r.answer.status,
                "error": r.answer.error,
                "answer": r.answer.snippet,
                "attempt": r.claimed.attempts + 1,
            }
            if r.kind == "failed":
                log.error("webhook.rejected", **fields)
            elif r.kind == "retry":
                log.warning("webhook.retry", **fields)
        if delivered:
            log.debug("webhook.delivered", events=delivered)
            if self.metrics is not None:
                self.metrics.webhook_delivered.labels(name).inc(delivered)

    def _update_pending(self) -> None:
        """The pending gauge, every PENDING_EVERY: from the rounds' loop too, not only when
        a claim runs, which a round of a slow endpoint may not do for minutes."""
        if self.metrics is None or time.monotonic() - self._pending_at < PENDING_EVERY:
            return
        self._pending_at = time.monotonic()
        try:
            with self.engine.connect() as conn:
                pending = queue.pending_count(conn, self.config.name)
        except Exception as err:  # a gauge is not worth failing a round for
            log.debug("webhook.pending_unreadable", error=type(err).__name__)
            return
        self.metrics.webhook_pending.labels(self.config.name).set(pending)

    def _note_error(self, message: str) -> None:
        try:
            with self.engine.begin() as conn:
                queue.note_error(conn, self.config.name, message)
        except Exception as err:  # the database may be down too; the log has it
            log.warning("webhook.error_not_saved", error=type(err).__name__)


class Deliverer:
    """Every configured endpoint's worker, and the watcher that wakes them on new events.

    It has its own database engine (connection pool): a slow endpoint never holds a
    connection that capture is waiting for.
    """

    @classmethod
    def follow(
        cls,
        current: Deliverer | None,
        config: Config,
        daemon_id: str,
        metrics: Metrics,
        only_daemon: bool,
        backlog: Backlog | None = None,
    ) -> Deliverer | None:
        """`syncd run`, at start and on SIGHUP: the deliverer for ``config``'s endpoints,
        made with the first [[webhook]].  Never raises: a database that is down is logged,
        and the next reload tries again."""
        try:
            if current is None and config.webhook:
                current = cls.for_daemon(
                    config.database.url,
                    daemon_id,
                    metrics,
                    only_daemon=only_daemon,
                    backlog=backlog,
                )
            if current is not None:
                current.apply(config.webhook)
        except Exception as err:
            log.error("webhooks.not_started", error=f"{type(err).__name__}: {str(err)[:200]}")
        return current

    @classmethod
    def for_daemon(
        cls,
        url: str,
        daemon_id: str,
        metrics: Metrics,
        *,
        only_daemon: bool,
        backlog: Backlog | None = None,
    ) -> Deliverer:
        from syncd.store.database import open_database

        engine = open_database(url, migrate=False, pool_size=4)
        _end_abandoned_transactions(engine)
        return cls(engine, daemon_id, metrics, only_daemon=only_daemon, backlog=backlog)

    def __init__(
        self,
        engine: Engine,
        daemon_id: str | None = None,
        metrics: Metrics | None = None,
        *,
        only_daemon: bool = False,
        backlog: Backlog | None = None,
    ) -> None:
        self._engine = engine
        self._backlog = backlog  # the capture's, in this process: deliveries yield to it
        if only_daemon:
            # No other daemon uses this database (SQLite's lock file): whatever a killed
            # predecessor still claims is free now, not when its claims expire.
            with engine.begin() as conn:
                queue.release(conn)
        self.daemon_id = daemon_id or uuid.uuid4().hex
        self._metrics = metrics
        self._workers: dict[str, EndpointWorker] = {}
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._lock = threading.Lock()
        self._configs: list[WebhookConfig] = []

    def apply(self, configs: Sequence[WebhookConfig]) -> None:
        """Start new endpoints, stop removed ones, restart changed or re-enabled ones."""
        with self._engine.begin() as conn:
            queue.ensure_endpoints(conn, configs)
            states = queue.states(conn)
        self._configs = list(configs)
        wanted = {c.name: c for c in configs}
        for config in configs:
            unknown = sorted(set(config.events or ()) - set(TYPES))
            if unknown:  # a misspelt type would silently filter everything out
                log.warning("webhook.unknown_event_types", webhook=config.name, types=unknown)
        with self._lock:
            for name, worker in list(self._workers.items()):
                alive = not worker.stop_event.is_set()
                if name not in wanted or worker.config != wanted[name] or not alive:
                    worker.stop()
                    del self._workers[name]
                    if name not in wanted:
                        log.info("webhook.removed", webhook=name)
            for name, config in wanted.items():
                if name in self._workers:
                    continue
                if states.get(name) == "disabled":
                    log.warning("webhook.disabled_endpoint", webhook=name)
                    continue
                self._workers[name] = EndpointWorker(
                    self._engine, config, self.daemon_id, self._metrics, self._backlog
                ).start()
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="webhook-outbox", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        """Wake the workers when the outbox grows: captured-to-sent within a poll or two."""
        head = -1
        polls = 0
        while not self._stop.wait(POLL):
            polls += 1
            try:
                with self._engine.connect() as conn:
                    now = queue.outbox_head(conn)
                    if polls % REVIVE_EVERY == 0:
                        self._revive(queue.states(conn))
            except Exception as err:  # the workers report the database themselves
                log.debug("webhook.outbox_unreadable", error=type(err).__name__)
                continue
            if now != head:
                head = now
                with self._lock:
                    workers = list(self._workers.values())
                for worker in workers:
                    worker.wake.set()

    def _revive(self, states: dict[str, str]) -> None:
        """Start the workers of endpoints enabled again (`syncd webhooks replay`)."""
        with self._lock:
            for config in self._configs:
                worker = self._workers.get(config.name)
                if states.get(config.name) != "active" or self._stop.is_set():
                    continue
                if worker is None or worker.stop_event.is_set():
                    log.info("webhook.enabled", webhook=config.name)
                    self._workers[config.name] = EndpointWorker(
                        self._engine, config, self.daemon_id, self._metrics, self._backlog
                    ).start()

    def stop(self, timeout: float) -> None:
        """Stop every worker; wait up to ``timeout`` for their batches.  Claims of requests
        still in flight are given back: those events go again later (at least once)."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.join(deadline - time.monotonic())
        try:
            with self._engine.begin() as conn:
                queue.release(conn, self.daemon_id)
        except Exception as err:  # the database may be down: the claims then expire
            log.warning("webhook.claims_not_released", error=type(err).__name__)
        self._engine.dispose()


@dataclass(frozen=True, slots=True)
class Drained:
    """One endpoint after `syncd sync`'s deliveries: what went, what failed for good in
    this run, what is still pending."""

    delivered: int
    failed: int
    pending: int


def _end_abandoned_transactions(engine: Engine) -> None:
    """PostgreSQL ends a deliverer session idle inside a transaction for IDLE_IN_TRANSACTION:
    a daemon paused while it stored outcomes (SIGSTOP, a frozen VM) holds its endpoint's row
    lock, and every other daemon's outcomes of that endpoint would wait until it woke.  The
    deliverer's transactions never wait on the network, so they never idle that long."""
    if engine.dialect.name != "postgresql":
        return
    timeout_ms = int(IDLE_IN_TRANSACTION * 1000)

    def on_connect(dbapi_connection: Any, _record: object) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET idle_in_transaction_session_timeout = {timeout_ms}")
        cursor.close()
        dbapi_connection.commit()

    event.listen(engine, "connect", on_connect)
    engine.dispose()


def drain(
    engine: Engine,
    configs: Sequence[WebhookConfig],
    timeout: float,
    on_endpoint: Callable[[str, Drained], None] | None = None,
) -> dict[str, Drained]:
    """`syncd sync`: deliver what is pending to every endpoint, all at once, for at most
    ``timeout`` seconds; per endpoint, what this run delivered and failed, and what is
    still pending."""
    daemon_id = f"sync-{uuid.uuid4().hex}"
    with engine.begin() as conn:
        queue.ensure_endpoints(conn, configs)
    deadline = time.monotonic() + timeout
    workers = [EndpointWorker(engine, c, daemon_id) for c in configs]
    threads = [threading.Thread(target=w.drain, args=(deadline,), daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
    for worker in workers:
        worker.stop()
    left: dict[str, Drained] = {}
    with engine.begin() as conn:
        queue.release(conn, daemon_id)
        for config, worker in zip(configs, workers, strict=True):
            pending = queue.pending_count(conn, config.name) + queue.untaken(conn, config)
            left[config.name] = Drained(worker.delivered, worker.failed, pending)
            if on_endpoint is not None:
                on_endpoint(config.name, left[config.name])
    return left
