"""What each [[crm]] still has to receive, and which CRM object is which syncd object.

The CRM sink is its own consumer of the outbox, beside the webhooks: a cursor per CRM
(``crm_endpoints.last_event_id``) moves in the same transaction that marks the events'
subjects pending in ``crm_deliveries``, so a crash neither skips nor doubles one.  A subject
has one delivery row however many events it had: the push sends the record or task as it is
at that moment, so a record's changes reach the CRM in order and a burst of changes costs
one request.

Claims use the database's clock (PostgreSQL's; on SQLite, with one daemon per file, the
local one) and a fencing epoch: each claim takes the row's next epoch, and only the holder
of the current epoch may record the outcome, so a daemon that stalled past its claim never
overwrites what the next holder did.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, or_, select, text, update

from syncd.schema.tables import crm_deliveries, crm_endpoints, crm_objects, events
from syncd.store.sql import chunks, insert_ignore, upsert

D = crm_deliveries
E = crm_endpoints
O = crm_objects  # noqa: E741

PUSHED_TYPES = {"records": ("record:",), "tasks": ("task:",)}


def db_now(conn: Connection) -> datetime:
    """The database's clock: every daemon sharing a PostgreSQL compares claims with it."""
    if conn.dialect.name == "postgresql":
        value = conn.scalar(text("SELECT clock_timestamp()"))
        assert isinstance(value, datetime)
        return value.astimezone(UTC)
    return datetime.now(UTC)


def ensure(conn: Connection, names: Iterable[str]) -> None:
    insert_ignore(
        conn,
        E,
        [{"name": n, "last_event_id": 0, "pushed": 0, "pulled": 0} for n in names],
        ["name"],
    )


def take_new(
    conn: Connection,
    name: str,
    push: Sequence[str],
    since: date | None,
    *,
    limit: int = 5000,
) -> int:
    """Mark the subjects of the events after the CRM's cursor pending; the number of outbox
    events looked at (0: nothing new, or another daemon is taking them right now)."""
    query = select(E.c.last_event_id).where(E.c.name == name)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    cursor = conn.execute(query).scalar_one_or_none()
    if cursor is None:
        return 0
    found = conn.execute(
        select(events.c.id, events.c.subject, events.c.type, events.c.occurred_at)
        .where(events.c.id > cursor)
        .order_by(events.c.id)
        .limit(limit)
    ).all()
    if not found:
        return 0
    prefixes = tuple(p for kind in push for p in PUSHED_TYPES[kind])
    start = datetime.combine(since, datetime.min.time(), UTC) if since else None
    newest: dict[str, int] = {}
    for ev in found:
        if not ev.subject.startswith(prefixes):
            continue
        # `since` keeps old records out (a deletion goes: it only removes what was pushed).
        old = start is not None and ev.occurred_at is not None and ev.occurred_at < start
        if old and ev.type != "record.deleted":
            continue
        newest[ev.subject] = ev.id
    now = db_now(conn)
    upsert(
        conn,
        D,
        [
            {
                "crm": name,
                "subject": subject,
                "state": "pending",
                "event_id": event_id,
                "queued_at": now,
                "attempts": 0,
                "next_attempt_at": now,
                "epoch": 0,
            }
            for subject, event_id in newest.items()
        ],
        ["crm", "subject"],
        # A change to a failed or waiting subject makes it due again; its epoch goes on.
        lambda excluded: {
            "state": excluded.state,
            "event_id": excluded.event_id,
            "attempts": 0,
            "next_attempt_at": excluded.next_attempt_at,
            "last_status": None,
        },
    )
    conn.execute(update(E).where(E.c.name == name).values(last_event_id=found[-1].id))
    return len(found)


@dataclass(frozen=True, slots=True)
class Claim:
    subject: str
    event_id: int
    epoch: int
    attempts: int
    queued_at: datetime


def claim(
    conn: Connection, name: str, daemon_id: str, *, limit: int, lease: timedelta
) -> list[Claim]:
    """Due deliveries of ``name``, oldest change first, claimed until the database's
    ``now + lease``, each under its next epoch."""
    now = db_now(conn)
    query = (
        select(D.c.subject, D.c.event_id, D.c.epoch, D.c.attempts, D.c.queued_at)
        .where(
            D.c.crm == name,
            D.c.state == "pending",
            D.c.next_attempt_at <= now,
            or_(D.c.claimed_until.is_(None), D.c.claimed_until < now),
        )
        .order_by(D.c.event_id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = conn.execute(query).all()
    for part in chunks([r.subject for r in rows]):
        conn.execute(
            update(D)
            .where(D.c.crm == name, D.c.subject.in_(list(part)))
            .values(claimed_by=daemon_id, claimed_until=now + lease, epoch=D.c.epoch + 1)
        )
    return [Claim(r.subject, r.event_id, r.epoch + 1, r.attempts, r.queued_at) for r in rows]


def renew(conn: Connection, name: str, claims: Iterable[Claim], *, lease: timedelta) -> None:
    """Extend the claims still held (same epoch) to the database's ``now + lease``: a batch
    being pushed stays this daemon's while it works through it, and a daemon killed
    mid-batch leaves its claims to expire within one lease."""
    until = db_now(conn) + lease
    for claim in claims:
        conn.execute(update(D).where(_held(name, claim)).values(claimed_until=until))


def _held(name: str, claim: Claim) -> Any:
    return (D.c.crm == name) & (D.c.subject == claim.subject) & (D.c.epoch == claim.epoch)


def done(conn: Connection, name: str, claim: Claim) -> bool:
    """The push of ``claim`` succeeded: its row goes, unless a newer change came meanwhile
    (then it stays pending, due now).  False when the claim was lost (fenced off)."""
    gone = conn.execute(delete(D).where(_held(name, claim), D.c.event_id == claim.event_id))
    if gone.rowcount:
        return True
    again = conn.execute(
        update(D)
        .where(_held(name, claim))
        .values(claimed_by=None, claimed_until=None, attempts=0, last_status=None)
    )
    return bool(again.rowcount)


def retry(
    conn: Connection, name: str, claim: Claim, *, delay: float, status: int | None, error: str
) -> bool:
    now = db_now(conn)
    moved = conn.execute(
        update(D)
        .where(_held(name, claim))
        .values(
            attempts=D.c.attempts + 1,
            next_attempt_at=now + timedelta(seconds=delay),
            claimed_by=None,
            claimed_until=None,
            last_status=status,
            last_error=error[:2000],
        )
    )
    return bool(moved.rowcount)


def release(conn: Connection, name: str, claim: Claim, *, delay: float) -> bool:
    """Give a claim back untried (its attempts unchanged), due after ``delay`` seconds."""
    moved = conn.execute(
        update(D)
        .where(_held(name, claim))
        .values(
            next_attempt_at=db_now(conn) + timedelta(seconds=delay),
            claimed_by=None,
            claimed_until=None,
        )
    )
    return bool(moved.rowcount)


def fail(conn: Connection, name: str, claim: Claim, *, status: int | None, error: str) -> bool:
    """Refused by the CRM: failed alone, with its answer, until the subject changes again."""
    moved = conn.execute(
        update(D)
        .where(_held(name, claim))
        .values(
            state="failed",
            attempts=D.c.attempts + 1,
            claimed_by=None,
            claimed_until=None,
            last_status=status,
            last_error=error[:2000],
        )
    )
    return bool(moved.rowcount)


def count_success(conn: Connection, name: str, pushed: int) -> None:
    conn.execute(
        update(E)
        .where(E.c.name == name)
        .values(pushed=E.c.pushed + pushed, last_success_at=datetime.now(UTC), last_error=None)
    )


def note_error(conn: Connection, name: str, error: str) -> None:
    conn.execute(
        update(E)
        .where(E.c.name == name)
        .values(last_error=error[:2000], last_error_at=datetime.now(UTC))
    )


def note_pull(conn: Connection, name: str, pulled: int) -> None:
    now = datetime.now(UTC)
    conn.execute(
        update(E)
        .where(E.c.name == name)
        .values(pulled=E.c.pulled + pulled, last_pull_at=now, last_success_at=now)
    )


def make_due(conn: Connection, name: str) -> None:
    """`syncd crm sync`: what waits for a retry is tried now."""
    conn.execute(
        update(D)
        .where(D.c.crm == name, D.c.state == "pending")
        .values(next_attempt_at=db_now(conn))
    )


# --- the map: syncd's objects and their CRM ids ----------------------------------------------


def crm_ids(
    conn: Connection, name: str, subjects: Iterable[str]
) -> dict[str, tuple[str, str, str | None]]:
    """``subject -> (crm_type, crm_id, remote_state)`` for those that have a CRM copy."""
    out: dict[str, tuple[str, str, str | None]] = {}
    for part in chunks(sorted(set(subjects))):
        for row in conn.execute(
            select(O.c.subject, O.c.crm_type, O.c.crm_id, O.c.remote_state).where(
                O.c.crm == name, O.c.subject.in_(list(part))
            )
        ):
            out[row.subject] = (row.crm_type, row.crm_id, row.remote_state)
    return out


def remember(
    conn: Connection,
    name: str,
    subject: str,
    crm_type: str,
    crm_id: str,
    remote_state: str | None = None,
) -> None:
    upsert(
        conn,
        O,
        [
            {
                "crm": name,
                "subject": subject,
                "crm_type": crm_type,
                "crm_id": crm_id,
                "remote_state": remote_state,
                "updated_at": datetime.now(UTC),
            }
        ],
        ["crm", "subject"],
        ["crm_type", "crm_id", "remote_state", "updated_at"],
    )


def forget_object(conn: Connection, name: str, subject: str) -> None:
    conn.execute(delete(O).where(O.c.crm == name, O.c.subject == subject))


def objects_of_type(
    conn: Connection, name: str, crm_type: str
) -> dict[str, tuple[str, str | None]]:
    """``subject -> (crm_id, remote_state)`` of every mapped object of one CRM type."""
    return {
        row.subject: (row.crm_id, row.remote_state)
        for row in conn.execute(
            select(O.c.subject, O.c.crm_id, O.c.remote_state).where(
                O.c.crm == name, O.c.crm_type == crm_type
            )
        )
    }


# --- what `crm list` and `status` show -----------------------------------------------------


def summary(conn: Connection, name: str) -> dict[str, Any]:
    row = conn.execute(select(E).where(E.c.name == name)).one_or_none()
    counts: dict[str, int] = dict(
        conn.execute(
            select(D.c.state, func.count()).where(D.c.crm == name).group_by(D.c.state)
        ).all()
    )
    last_event = conn.scalar(select(func.max(events.c.id))) or 0
    cursor = row.last_event_id if row is not None else 0
    refused = [
        {"subject": r.subject, "status": r.last_status, "error": r.last_error}
        for r in conn.execute(
            select(D.c.subject, D.c.last_status, D.c.last_error)
            .where(D.c.crm == name, D.c.state == "failed")
            .order_by(D.c.event_id)
            .limit(20)
        )
    ]
    pending = int(counts.get("pending", 0))
    failed = int(counts.get("failed", 0))
    last_error = row.last_error if row is not None else None
    return {
        "name": name,
        "state": "failing" if (last_error or failed) else "ok",
        "pending": pending,
        "untaken_events": max(0, int(last_event) - int(cursor)),
        "failed": failed,
        "pushed": int(row.pushed) if row is not None else 0,
        "pulled": int(row.pulled) if row is not None else 0,
        "last_success_at": row.last_success_at if row is not None else None,
        "last_pull_at": row.last_pull_at if row is not None else None,
        "last_error": last_error,
        "last_error_at": row.last_error_at if row is not None else None,
        "refused": refused,
    }


def status_rows(reader: Any, names: Sequence[str]) -> list[dict[str, Any]]:
    """`syncd status`: per [[crm]] its state like a webhook endpoint's, read with the status
    command's plain DB-API reader (syncd/store/status_read.py ``Reader``)."""
    from syncd.domain.payloads import iso

    stored = {
        row["name"]: row
        for row in reader.rows(
            "SELECT name, pushed, pulled, last_success_at, last_error, last_error_at "
            "FROM crm_endpoints"
        )
    }
    counts: dict[tuple[str, str], int] = {
        (row["crm"], row["state"]): int(row["n"])
        for row in reader.rows(
            "SELECT crm, state, COUNT(*) AS n FROM crm_deliveries GROUP BY crm, state"
        )
    }
    out = []
    for name in names:
        row = stored.get(name, {})
        failed = counts.get((name, "failed"), 0)
        out.append(
            {
                "name": name,
                "state": "failing" if (row.get("last_error") or failed) else "ok",
                "pending": counts.get((name, "pending"), 0),
                "failed": failed,
                "pushed": int(row.get("pushed") or 0),
                "pulled": int(row.get("pulled") or 0),
                "last_success_at": iso(row.get("last_success_at")),
                "last_error": row.get("last_error"),
            }
        )
    return out
