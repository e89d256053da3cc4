"""Many records over many customers, inserted directly: volume for the insight tests and bench.

Capture through Dovecot proves the pipeline; these rows prove the queries at scale.  The
shape is what a sales team's database looks like: threads of customer emails and our
replies (a few left unanswered), meetings (some ahead, some cancelled), each record linked
to its customer with an external and an internal participant and a mailbox source, and a
share of customers whose contact stopped some weeks ago.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text

from syncd.schema.tables import (
    customer_domains,
    customers,
    participants,
    provenance,
    record_customers,
    records,
    tasks,
)
from syncd.store.sql import insert_ignore

BATCH = 20_000
REPS = tuple(f"rep{n}@example.com" for n in range(10))


@dataclass(frozen=True)
class Seeded:
    customers: int
    records: int
    reps: tuple[str, ...]
    quiet: tuple[int, ...]  # customers whose contact stopped 20 to 60 days before ``now``


def seed(
    engine: Engine,
    *,
    n_records: int,
    n_customers: int,
    now: datetime,
    reps: tuple[str, ...] = REPS,
    days: int = 400,
    rng_seed: int = 15,
) -> Seeded:
    """Insert ``n_records`` records over ``n_customers`` customers in bulk."""
    rng = random.Random(rng_seed)
    per_customer = max(1, n_records // n_customers)
    quiet: list[int] = []
    with engine.begin() as conn:
        insert_ignore(
            conn,
            customers,
            [{"id": c, "name": f"Customer {c:05d}", "created_at": now} for c in range(1, n_customers + 1)],
            ["id"],
        )  # fmt: skip
        insert_ignore(
            conn,
            customer_domains,
            [{"customer_id": c, "domain": f"c{c}.test"} for c in range(1, n_customers + 1)],
            ["customer_id", "domain"],
        )
    rows: dict[str, list[dict[str, Any]]] = {"r": [], "p": [], "rc": [], "s": [], "t": []}
    next_id = 1
    uid = 1
    made = 0
    for customer in range(1, n_customers + 1):
        count = per_customer if customer < n_customers else n_records - made
        made += count
        rep = reps[customer % len(reps)]
        stops = now
        if customer % 7 == 0:
            stops = now - timedelta(days=rng.uniform(20, 60))
            quiet.append(customer)
        moments = sorted(stops - timedelta(days=rng.uniform(0, days)) for _ in range(count))
        thread = ""
        for index, turn in enumerate(_threads(rng, moments)):
            kind, direction, at, starts_new = turn
            rid = next_id
            next_id += 1
            if starts_new or not thread:
                thread = f"t{rid}@c{customer}.test"
            status = None
            starts = ends = None
            if kind == "meeting":
                if rng.random() < 0.2 and stops == now:  # booked ahead
                    at = now + timedelta(days=rng.uniform(1, 30))
                status = "cancelled" if rng.random() < 0.05 else "scheduled"
                starts, ends = at, at + timedelta(hours=1)
            rows["r"].append(
                {
                    "id": rid, "key": f"{kind}:{rid}@c{customer}.test", "kind": kind,
                    "direction": direction, "subject": f"Subject {index} for customer {customer}",
                    "snippet": "A few words of the message that the capture kept as a snippet. " * 3,
                    "occurred_at": at, "message_id": f"{rid}@c{customer}.test" if kind == "email" else None,
                    "thread_key": thread if kind == "email" else None, "created_at": at,
                    "status": status, "starts_at": starts, "ends_at": ends,
                    "organizer": rep if kind == "meeting" else None,
                }
            )  # fmt: skip
            contact = f"buyer{customer % 5}@c{customer}.test"
            sender, recipient = (contact, rep) if direction == "inbound" else (rep, contact)
            rows["p"].append({"record_id": rid, "address": sender, "name": "", "role": "from",
                              "external": int(sender == contact), "contact_id": None})  # fmt: skip
            rows["p"].append({"record_id": rid, "address": recipient, "name": "", "role": "to",
                              "external": int(recipient == contact), "contact_id": None})  # fmt: skip
            rows["rc"].append({"record_id": rid, "customer_id": customer, "link": "domain"})
            if kind == "email":
                rows["s"].append({"record_id": rid, "mailbox": rep.split("@")[0], "folder": "INBOX",
                                  "uidvalidity": 1, "uid": uid})  # fmt: skip
                uid += 1
            if rng.random() < 0.01:
                rows["t"].append({"rule": None, "record_id": None, "title": "Call back", "owner": rep,
                                  "customer_id": customer, "due_at": now,
                                  "status": ("open", "snoozed", "done")[rid % 3],
                                  "created_at": now, "updated_at": now})  # fmt: skip
            if len(rows["r"]) >= BATCH:
                _flush(engine, rows)
    _flush(engine, rows)
    _analyze(engine)
    return Seeded(n_customers, n_records, reps, tuple(quiet))


def _threads(
    rng: random.Random, moments: list[datetime]
) -> Iterator[tuple[str, str, datetime, bool]]:
    """(kind, direction, when, starts a thread) per moment: a thread asks, we answer some
    hours later, it goes on a few turns; one in ten asks go unanswered."""
    turn = 0
    for at in moments:
        if rng.random() < 0.12:
            yield "meeting", "outbound", at, True
            continue
        starts = turn == 0 or rng.random() < 0.3
        if starts:
            turn = 0
        direction = "inbound" if turn % 2 == 0 else "outbound"
        if direction == "outbound" and rng.random() < 0.1:
            direction, starts = "inbound", True  # the previous ask stays unanswered
        turn += 1
        yield "email", direction, at, starts


def _flush(engine: Engine, rows: dict[str, list[dict[str, Any]]]) -> None:
    with engine.begin() as conn:
        insert_ignore(conn, records, rows["r"], ["key"])
        insert_ignore(conn, participants, rows["p"], ["record_id", "address", "role"])
        insert_ignore(conn, record_customers, rows["rc"], ["record_id", "customer_id"])
        insert_ignore(conn, provenance, rows["s"], ["mailbox", "folder", "uidvalidity", "uid"])
        if rows["t"]:
            conn.execute(tasks.insert(), rows["t"])
    for batch in rows.values():
        batch.clear()


def _analyze(engine: Engine) -> None:
    """Fresh planner statistics, as autovacuum (PostgreSQL) or `ANALYZE` would leave them;
    PostgreSQL's id sequences moved past the ids given here, so later inserts still work."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if conn.dialect.name == "postgresql":
            for table in ("records", "customers"):
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
                    )
                )
        conn.execute(text("VACUUM ANALYZE" if conn.dialect.name == "postgresql" else "ANALYZE"))
