"""Delivery state in the database: endpoints' cursors into the outbox, pending deliveries.

Taking events moves an endpoint's cursor in the same transaction that inserts their
delivery rows, so a crash neither skips nor doubles one.  Rows are claimed for a while by
the daemon sending them (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several daemons
share one endpoint's backlog and each event goes out once); a daemon killed mid-request
leaves its claims to expire, and those events are sent again (at least once).

A claim is fenced as a source's lease is (store/leases.py): every claim raises the row's
``claim_epoch``, and the holder and that epoch are the claim's token.  Renewing and storing
an outcome touch only rows whose token is still the caller's, so a daemon that was paused
(SIGSTOP, a frozen VM) while another took its claims over sends nothing more of them and
records nothing (``renew`` says which are still held; ``record`` leaves the others alone).
Every time that decides who may send is the database's clock, never a host's.  Only the
oldest pending event of each subject is ever claimed (``ready`` = 1 marks it, and passes
to the next one when it is delivered or fails): events about one record or task reach the
receiver in the order they happened.  Whatever moves ``ready`` first locks the endpoint's
row, so two daemons never both miss a subject's next event.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, or_, select, update

from syncd.config import WebhookConfig
from syncd.schema.tables import events, webhook_deliveries, webhook_endpoints
from syncd.store.events import StoredEvent, load_data
from syncd.store.forgotten import without_forgotten
from syncd.store.leases import database_time, db_now
from syncd.store.sql import chunks, insert_ignore
from syncd.webhooks.policy import Answer, Kind, next_delay

D = webhook_deliveries
E = webhook_endpoints


def config_hash(config: WebhookConfig) -> str:
    """What, when changed in the config, re-enables a disabled endpoint (never the secret)."""
    key = [config.url, sorted(config.events or []), str(config.since or "")]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()


def ensure_endpoints(conn: Connection, configs: Iterable[WebhookConfig]) -> list[str]:
    """A row per configured endpoint; a disabled one whose config changed is enabled again.
    Returns the names re-enabled."""
    configs = list(configs)
    insert_ignore(
        conn,
        E,
        [
            {
                "name": c.name,
                "last_event_id": 0,
                "state": "active",
                "config_hash": config_hash(c),
                "delivered": 0,
            }
            for c in configs
        ],
        ["name"],
    )
    enabled = []
    for c in configs:
        digest = config_hash(c)
        row = conn.execute(select(E.c.state, E.c.config_hash).where(E.c.name == c.name)).one()
        if row.config_hash == digest:
            continue
        conn.execute(update(E).where(E.c.name == c.name).values(config_hash=digest))
        if row.state == "disabled":
            enable(conn, c.name)
            enabled.append(c.name)
    return enabled


def enable(conn: Connection, name: str) -> None:
    """Back to active; its waiting deliveries start their retry window anew."""
    now = database_time(conn)
    conn.execute(update(E).where(E.c.name == name).values(state="active", reason=None))
    conn.execute(
        update(D)
        .where(D.c.endpoint == name, D.c.state == "pending")
        .values(queued_at=now, next_attempt_at=now, attempts=0)
    )
    repair_ready(conn, name)


def _for_update(conn: Connection, query: Any, *, of: Any) -> Any:
    # SQLite has one writer at a time (and one daemon per file): no row locks to take.
    if conn.dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True, of=of)
    return query


def take_new(conn: Connection, config: WebhookConfig, limit: int = 2000) -> int:
    """Move events after the endpoint's cursor into deliveries (filtered by type and
    ``since``); the number of outbox events looked at (0: nothing new, or busy elsewhere)."""
    row = conn.execute(
        _for_update(
            conn,
            select(E.c.last_event_id, E.c.state).where(E.c.name == config.name),
            of=E,
        )
    ).one_or_none()
    if row is None or row.state != "active":
        return 0
    found = conn.execute(
        select(events.c.id, events.c.type, events.c.subject, events.c.occurred_at)
        .where(events.c.id > row.last_event_id)
        .order_by(events.c.id)
        .limit(limit)
    ).all()
    if not found:
        return 0
    types = set(config.events) if config.events else None
    since = datetime.combine(config.since, datetime.min.time(), UTC) if config.since else None
    wanted = [
        ev
        for ev in found
        if (types is None or ev.type in types)
        and (since is None or ev.occurred_at is None or ev.occurred_at >= since)
    ]
    newest = _subjects_pending(conn, config.name, {ev.subject for ev in wanted})
    # After a replay moved the cursor back, an event may come before one still pending.
    behind = {ev.subject for ev in wanted if ev.id < newest.get(ev.subject, 0)}
    waiting = set(newest)
    now = database_time(conn)
    rows = []
    for ev in wanted:
        ready = ev.subject not in waiting
        waiting.add(ev.subject)
        rows.append(
            {
                "endpoint": config.name,
                "event_id": ev.id,
                "subject": ev.subject,
                "state": "pending",
                "ready": int(ready),
                "queued_at": now,
                "attempts": 0,
                "next_attempt_at": now,
            }
        )
    insert_ignore(conn, D, rows, ["endpoint", "event_id"])
    if behind:  # the oldest pending event of each such subject goes next, as always
        for part in chunks(sorted(behind)):
            conn.execute(
                update(D)
                .where(D.c.endpoint == config.name, D.c.state == "pending", D.c.subject.in_(part))
                .values(ready=0)
            )
        _promote(conn, config.name, behind)
    conn.execute(update(E).where(E.c.name == config.name).values(last_event_id=found[-1].id))
    return len(found)


@dataclass(frozen=True, slots=True)
class Claimed:
    event_id: int
    subject: str
    attempts: int
    queued_at: datetime
    event: StoredEvent | None  # None: gone from the outbox (erased by `forget`), or broken
    broken: bool = False  # its stored data is not JSON: it fails, never sent
    epoch: int = 0  # the claim's generation: with the holder, its fencing token


def claim(
    conn: Connection, name: str, daemon_id: str, *, limit: int, lease: timedelta
) -> list[Claimed]:
    """Due deliveries of ``name``, at most one per subject (its oldest pending one),
    claimed for ``lease`` (by the database's clock) by ``daemon_id``; none while the
    endpoint is disabled."""
    if conn.scalar(select(E.c.state).where(E.c.name == name)) != "active":
        return []
    query = (
        select(D.c.event_id, D.c.subject, D.c.attempts, D.c.queued_at, D.c.claim_epoch)
        .where(
            D.c.endpoint == name,
            D.c.state == "pending",
            D.c.ready == 1,
            D.c.next_attempt_at <= db_now(conn),
            or_(D.c.claimed_until.is_(None), D.c.claimed_until < db_now(conn)),
        )
        .order_by(D.c.event_id)
        .limit(limit)
    )
    rows = conn.execute(_for_update(conn, query, of=D)).all()
    if not rows:
        return []
    ids = [r.event_id for r in rows]
    stored: dict[int, StoredEvent] = {}
    broken: set[int] = set()
    for part in chunks(ids):
        # The rows are locked (FOR UPDATE; SQLite has one writer): each epoch read above
        # is the one this claim raises.
        conn.execute(
            update(D)
            .where(D.c.endpoint == name, D.c.event_id.in_(list(part)))
            .values(
                claimed_by=daemon_id,
                claimed_until=db_now(conn, lease),
                claim_epoch=D.c.claim_epoch + 1,
            )
        )
        for ev in conn.execute(select(events).where(events.c.id.in_(list(part)))):
            try:
                data = load_data(ev.data)
            except ValueError:
                broken.add(ev.id)  # fails alone; the others go
                continue
            stored[ev.id] = StoredEvent(
                id=ev.id,
                type=ev.type,
                subject=ev.subject,
                occurred_at=ev.occurred_at,
                created_at=ev.created_at,
                data=data,
            )
    return [
        Claimed(
            r.event_id, r.subject, r.attempts, r.queued_at, stored.get(r.event_id),
            broken=r.event_id in broken, epoch=r.claim_epoch + 1,
        )
        for r in rows
    ]  # fmt: skip


def _by_epoch(claims: Iterable[Claimed]) -> dict[int, list[int]]:
    """Event ids by claim epoch: a few groups (most rows are claimed once or twice), so a
    fenced statement per group and chunk, never one per row."""
    out: dict[int, list[int]] = {}
    for c in claims:
        out.setdefault(c.epoch, []).append(c.event_id)
    return out


def _held(conn: Connection, name: str, daemon_id: str, claims: Iterable[Claimed]) -> set[int]:
    """Of ``claims``, the event ids whose claim is still ``daemon_id``'s under the same
    epoch, their rows locked until this transaction ends (PostgreSQL): a claim another
    daemon is committing is waited for, and then seen as taken."""
    held: set[int] = set()
    for epoch, ids in _by_epoch(claims).items():
        for part in chunks(sorted(ids)):
            query = select(D.c.event_id).where(
                D.c.endpoint == name,
                D.c.claimed_by == daemon_id,
                D.c.claim_epoch == epoch,
                D.c.event_id.in_(part),
            )
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            held.update(conn.scalars(query))
    return held


def renew(
    conn: Connection, name: str, daemon_id: str, claims: Iterable[Claimed], *, lease: timedelta
) -> set[int]:
    """Extend ``daemon_id``'s claims by ``lease`` from the database's now: deliveries waiting
    for a sender of a slow endpoint are still this daemon's, not sent twice.  Returns the
    event ids still held; the others (taken over by another daemon while this one was
    paused, or given back) must not be sent."""
    claims = list(claims)
    held = _held(conn, name, daemon_id, claims)
    for part in chunks(sorted(held)):
        conn.execute(
            update(D)
            .where(D.c.endpoint == name, D.c.event_id.in_(part))
            .values(claimed_until=db_now(conn, lease))
        )
    return held


@dataclass(frozen=True, slots=True)
class Result:
    claimed: Claimed
    answer: Answer
    kind: Kind


def probe_now(conn: Connection, name: str) -> bool:
    """Make the oldest delivery waiting for a retry due now (unless the receiver asked to
    wait with 429): `syncd sync` learns at once whether the endpoint is back, and a success
    pulls the rest forward.  Without it a cron run after an outage delivered nothing until
    each retry's backoff (up to an hour) ran out."""
    now = database_time(conn)
    oldest = conn.scalar(
        select(func.min(D.c.event_id)).where(
            D.c.endpoint == name,
            D.c.state == "pending",
            D.c.ready == 1,
            D.c.next_attempt_at > now,
            or_(D.c.last_status.is_(None), D.c.last_status != 429),
        )
    )
    if oldest is None:
        return False
    conn.execute(
        update(D).where(D.c.endpoint == name, D.c.event_id == oldest).values(next_attempt_at=now)
    )
    return True


def describe_answer(answer: Answer) -> str:
    if answer.status is None:
        return answer.error or "network error"
    if answer.status == 0:
        return f"not sent: {answer.snippet}"
    text = f"HTTP {answer.status}"
    if 300 <= answer.status < 400:
        # Never followed: a redirect would resend the signed body to wherever it points.
        text += " (a redirect, not followed: set url to the address it points to)"
    return text + (f": {answer.snippet}" if answer.snippet else "")


@dataclass(frozen=True, slots=True)
class Recorded:
    """What ``record`` stored: the outcomes of claims still held (``results``), the
    deliveries that failed for good, and the outcomes left out (claims lost meanwhile)."""

    results: list[Result]
    failed: int
    lost: int


def record(
    conn: Connection,
    name: str,
    daemon_id: str,
    results: Sequence[Result],
    *,
    retry_for: float,
    rng: random.Random,
    pull_forward: bool = False,
) -> Recorded:
    """Store what a batch of attempts got, in one transaction; only for the claims still
    ``daemon_id``'s (a paused daemon whose claims another took records nothing: that one
    sends them, and their subjects' next events wait for it).  ``pull_forward``: the
    endpoint answers again after failing, so what waits for a retry goes now, not in up to
    an hour (except what the receiver itself asked to wait with 429 Too Many Requests)."""
    _lock_endpoint(conn, name)
    held = _held(conn, name, daemon_id, [r.claimed for r in results])
    lost = len(results) - len(held)
    results = [r for r in results if r.claimed.event_id in held]
    if not results:
        return Recorded([], 0, lost)
    now = database_time(conn)
    delivered = [r.claimed.event_id for r in results if r.kind == "delivered"]
    for part in chunks(delivered):
        conn.execute(delete(D).where(D.c.endpoint == name, D.c.event_id.in_(list(part))))
    if delivered:
        conn.execute(
            update(E)
            .where(E.c.name == name)
            .values(delivered=E.c.delivered + len(delivered), last_success_at=now)
        )
    if delivered and pull_forward:
        conn.execute(
            update(D)
            .where(
                D.c.endpoint == name,
                D.c.state == "pending",
                D.c.next_attempt_at > now,
                or_(D.c.last_status.is_(None), D.c.last_status != 429),
            )
            .values(next_attempt_at=now)
        )
    changes: list[dict[str, Any]] = []
    texts = without_forgotten(
        conn, [describe_answer(r.answer) for r in results if r.kind != "delivered"]
    )
    for r in results:
        if r.kind == "delivered":
            continue
        attempts = r.claimed.attempts + 1
        text = texts.pop(0)[:500]
        state = "failed" if r.kind == "failed" else "pending"
        wait = next_delay(attempts, r.answer.retry_after, rng)
        if r.kind == "retry" and (now - r.claimed.queued_at).total_seconds() + wait > retry_for:
            deadline = r.claimed.queued_at + timedelta(seconds=retry_for)
            if deadline <= now:
                state = "failed"
                text = f"not delivered within retry_for: {text}"[:500]
            else:
                wait = (deadline - now).total_seconds()  # one last try at the deadline
        if r.kind == "gone":
            wait = 0.0  # waits for the endpoint to be enabled again, then goes first
        changes.append(
            {
                "e": name,
                "i": r.claimed.event_id,
                "subject": r.claimed.subject,
                "state": state,
                "attempts": attempts,
                "next_attempt_at": now + timedelta(seconds=wait),
                "last_status": r.answer.status,
                "last_error": text,
            }
        )
    if changes:
        conn.execute(
            update(D)
            .where(D.c.endpoint == bindparam("e"), D.c.event_id == bindparam("i"))
            .values(
                state=bindparam("state"),
                attempts=bindparam("attempts"),
                next_attempt_at=bindparam("next_attempt_at"),
                last_status=bindparam("last_status"),
                last_error=bindparam("last_error"),
                claimed_by=None,
                claimed_until=None,
            ),
            [{k: v for k, v in c.items() if k != "subject"} for c in changes],
        )
        conn.execute(
            update(E)
            .where(E.c.name == name)
            .values(last_error=changes[-1]["last_error"], last_error_at=now)
        )
    # Delivered and failed: each subject's next pending event may go now.
    moved = {r.claimed.subject for r in results if r.kind == "delivered"}
    failed = {c["subject"] for c in changes if c["state"] == "failed"}
    _promote(conn, name, moved | failed)
    return Recorded(results, sum(1 for c in changes if c["state"] == "failed"), lost)


def disable(conn: Connection, name: str, reason: str) -> None:
    conn.execute(update(E).where(E.c.name == name).values(state="disabled", reason=reason))
    conn.execute(update(D).where(D.c.endpoint == name).values(claimed_by=None, claimed_until=None))


def expire(conn: Connection, name: str, retry_for: float) -> int:
    """Mark failed the deliveries tried and still undelivered after ``retry_for`` seconds."""
    _lock_endpoint(conn, name)
    late = and_(
        D.c.endpoint == name,
        D.c.state == "pending",
        D.c.attempts > 0,
        D.c.queued_at < db_now(conn, -timedelta(seconds=retry_for)),
        or_(D.c.claimed_until.is_(None), D.c.claimed_until < db_now(conn)),
    )
    subjects = set(conn.scalars(select(D.c.subject).where(late)))
    if not subjects:
        return 0
    done = conn.execute(update(D).where(late).values(state="failed", ready=0))
    _promote(conn, name, subjects)
    return done.rowcount or 0


def release(conn: Connection, daemon_id: str | None = None) -> None:
    """Give claims back: this daemon's (it stops), or all (SQLite's only daemon starts)."""
    query = update(D).values(claimed_by=None, claimed_until=None)
    if daemon_id is not None:
        query = query.where(D.c.claimed_by == daemon_id)
    conn.execute(query)


def replay(conn: Connection, name: str, after: int) -> tuple[int, int]:
    """Deliver again every event with id > ``after``: the cursor moves back, failed rows
    come back, a disabled endpoint is enabled.  (events queued again, failed re-queued)"""
    row = conn.execute(select(E.c.last_event_id, E.c.state).where(E.c.name == name)).one()
    if row.state == "disabled":
        enable(conn, name)
    now = database_time(conn)
    requeued = conn.execute(
        update(D)
        .where(D.c.endpoint == name, D.c.state == "failed", D.c.event_id > after)
        .values(
            state="pending",
            attempts=0,
            queued_at=now,
            next_attempt_at=now,
            last_status=None,
            claimed_by=None,
            claimed_until=None,
        )
    ).rowcount
    repair_ready(conn, name)
    cursor = min(row.last_event_id, after)
    conn.execute(update(E).where(E.c.name == name).values(last_event_id=cursor))
    again = conn.scalar(
        select(func.count())
        .select_from(events)
        .where(and_(events.c.id > cursor, events.c.id <= row.last_event_id))
    )
    return int(again or 0), int(requeued or 0)


def first_event_since(conn: Connection, since: datetime) -> int:
    """The cursor that replays events created at or after ``since``."""
    first = conn.scalar(select(func.min(events.c.id)).where(events.c.created_at >= since))
    if first is None:
        return int(conn.scalar(select(func.coalesce(func.max(events.c.id), 0))) or 0)
    return int(first) - 1


def pending_count(conn: Connection, name: str) -> int:
    return int(
        conn.scalar(
            select(func.count()).select_from(D).where(D.c.endpoint == name, D.c.state == "pending")
        )
        or 0
    )


def outbox_head(conn: Connection) -> int:
    return int(conn.scalar(select(func.coalesce(func.max(events.c.id), 0))) or 0)


def states(conn: Connection) -> dict[str, str]:
    return {row.name: row.state for row in conn.execute(select(E.c.name, E.c.state))}


def note_error(conn: Connection, name: str, message: str) -> None:
    conn.execute(
        update(E)
        .where(E.c.name == name)
        .values(last_error=message[:500], last_error_at=database_time(conn))
    )


def untaken(conn: Connection, config: WebhookConfig) -> int:
    """Events after the endpoint's cursor that its type filter would take (``since`` is not
    applied: an upper bound)."""
    cursor = conn.scalar(select(E.c.last_event_id).where(E.c.name == config.name)) or 0
    query = select(func.count()).select_from(events).where(events.c.id > cursor)
    if config.events:
        query = query.where(events.c.type.in_(config.events))
    return int(conn.scalar(query) or 0)


def _lock_endpoint(conn: Connection, name: str) -> None:
    """Serialise what moves ``ready`` for one endpoint (PostgreSQL; SQLite has one writer)."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(E.c.name).where(E.c.name == name).with_for_update())


def _subjects_pending(conn: Connection, name: str, subjects: set[str]) -> dict[str, int]:
    """Of ``subjects``, those with a pending delivery, and the newest pending event of each."""
    found: dict[str, int] = {}
    for part in chunks(sorted(subjects)):
        found.update(
            (subject, int(newest))
            for subject, newest in conn.execute(
                select(D.c.subject, func.max(D.c.event_id))
                .where(D.c.endpoint == name, D.c.state == "pending", D.c.subject.in_(part))
                .group_by(D.c.subject)
            )
        )
    return found


def _promote(conn: Connection, name: str, subjects: set[str]) -> None:
    """Make the oldest pending delivery of each of ``subjects`` the ready one."""
    for part in chunks(sorted(subjects)):
        heads = list(
            conn.scalars(
                select(func.min(D.c.event_id))
                .where(D.c.endpoint == name, D.c.state == "pending", D.c.subject.in_(part))
                .group_by(D.c.subject)
            )
        )
        if heads:
            conn.execute(
                update(D).where(D.c.endpoint == name, D.c.event_id.in_(heads)).values(ready=1)
            )


def repair_ready(conn: Connection, name: str) -> None:
    """Recompute ``ready`` for the whole endpoint: after a replay or a re-enable, and now
    and then as a safety net (one grouped scan of its pending deliveries)."""
    _lock_endpoint(conn, name)
    heads = (
        select(func.min(D.c.event_id))
        .where(D.c.endpoint == name, D.c.state == "pending")
        .group_by(D.c.subject)
        .scalar_subquery()
    )
    conn.execute(
        update(D)
        .where(D.c.endpoint == name, D.c.state == "pending", D.c.ready == 1)
        .where(D.c.event_id.not_in(heads))
        .values(ready=0)
    )
    conn.execute(
        update(D)
        .where(D.c.endpoint == name, D.c.state == "pending", D.c.ready == 0)
        .where(D.c.event_id.in_(heads))
        .values(ready=1)
    )


def delivered_everywhere(
    conn: Connection, event_ids: Sequence[int], names: Sequence[str]
) -> set[int]:
    """Of ``event_ids``, those every endpoint in ``names`` is done with: taken (its cursor
    is past them) and not pending or failed.  For `forget`, whose `contact.forgotten`
    event is erased once every endpoint has it (skipped by an endpoint's filter counts)."""
    if not event_ids:
        return set()
    left = set(event_ids)
    cursors = {
        row.name: row.last_event_id
        for row in conn.execute(
            select(E.c.name, E.c.last_event_id).where(E.c.name.in_(list(names)))
        )
    }
    for name in names:
        cursor = cursors.get(name, 0)
        left = {i for i in left if i <= cursor}
        for part in chunks(sorted(left)):
            left -= set(
                conn.scalars(
                    select(D.c.event_id).where(D.c.endpoint == name, D.c.event_id.in_(part))
                )
            )
    return left
