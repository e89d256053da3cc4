"""The feed as pull consumers use it: `--follow` streams, paging by id never skips an event
of a slower PostgreSQL transaction, and retention never reuses an id."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, update

from syncd.config_file import parse_config
from syncd.engine.event_upkeep import events_upkeep
from syncd.schema.tables import events as events_table
from syncd.schema.tables import suppressions
from syncd.store import database, event_upkeep
from syncd.store import events as outbox
from syncd.store.events import Event
from tests.conftest import World
from tests.servers.sample import CUSTOMERS_CSV

SYNCD = Path(sys.executable).with_name("syncd")


def _line(stream: subprocess.Popen[bytes], timeout: float) -> bytes:
    """The next line the process prints, within ``timeout`` seconds (b"" if none)."""
    assert stream.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(stream.stdout, selectors.EVENT_READ)
    try:
        if not selector.select(timeout):
            return b""
        return stream.stdout.readline()
    finally:
        selector.close()


def test_follow_streams_new_events_and_exits_cleanly_on_sigint(world: World) -> None:
    world.customers(CUSTOMERS_CSV)
    add = ("tasks", "add", "--customer", "Initech", "--owner", "alice@example.com", "--due")
    world.cli(*add, "2026-03-10", "--title", "Before")
    (before,) = json.loads(world.cli("events", "list", "--json").stdout)
    follower = subprocess.Popen(
        [
            *(str(SYNCD), "--config", str(world.config_path)),
            *("events", "list", "--follow", "--nl", "--after", before["id"]),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        # Written by this process while the follower polls (or before it first looks: it
        # starts after --after either way).
        time.sleep(0.5)
        assert _line(follower, 0.1) == b""
        world.cli(*add, "2026-03-11", "--title", "Streamed")
        streamed = json.loads(_line(follower, 20))
        assert streamed["type"] == "task.created" and int(streamed["id"]) > int(before["id"])
        assert streamed["data"]["title"] == "Streamed"
        assert set(streamed) == {"id", "type", "created_at", "data"}
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=10) == 0
        assert follower.stderr is not None
        assert b"Traceback" not in follower.stderr.read()
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()

    # From --after, with --limit: what is there, then it stops by itself.
    again = world.cli("events", "list", "--follow", "--nl", "--after", "0", "--limit", "2").stdout
    assert [json.loads(x)["data"]["title"] for x in again.splitlines()] == ["Before", "Streamed"]
    refused = world.cli("events", "list", "--follow", "--json", expect=2)
    assert "--nl" in refused.output


@pytest.mark.postgres
def test_a_reader_paging_by_id_never_skips_an_event_of_a_slower_transaction(
    pg_engine: Engine,
) -> None:
    # One writer holds its transaction open after emitting; another commits meanwhile.
    slow = pg_engine.connect()
    slow_tx = slow.begin()
    outbox.emit(slow, Event("record.created", "record:1", {"n": 1}))
    fast_done = threading.Event()

    def fast() -> None:
        with pg_engine.begin() as conn:
            outbox.emit(conn, Event("record.created", "record:2", {"n": 2}))
        fast_done.set()

    writer = threading.Thread(target=fast)
    writer.start()
    # The second writer cannot make its event visible before the first commits, so a
    # reader paging by id sees nothing yet rather than id 2 without id 1.
    assert not fast_done.wait(1.0)
    with pg_engine.connect() as conn:
        assert outbox.read(conn) == []
    slow_tx.commit()
    slow.close()
    writer.join(10)
    assert fast_done.is_set()
    with pg_engine.connect() as conn:
        seen = outbox.read(conn)
    assert [e.data["n"] for e in seen] == [1, 2] and seen[0].id < seen[1].id

    # Many writers with random pauses between emitting and committing; one reader paging
    # by id the whole time must end with every event, each once, in id order.
    writers, per_writer = 4, 15
    total = len(seen) + writers * per_writer
    read_ids: list[int] = [e.id for e in seen]
    stop = threading.Event()

    def reader() -> None:
        after = read_ids[-1]
        while not stop.is_set() and len(read_ids) < total:
            with pg_engine.connect() as conn:
                batch = outbox.read(conn, after=after)
            read_ids.extend(e.id for e in batch)
            after = read_ids[-1]

    def write(n: int) -> None:
        for i in range(per_writer):
            with pg_engine.begin() as conn:
                outbox.emit(conn, Event("task.updated", f"task:{n}", {"i": i}))
                time.sleep(0.002 * ((n + i) % 3))

    threads = [threading.Thread(target=reader)] + [
        threading.Thread(target=write, args=(n,)) for n in range(writers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads[1:]:
        thread.join(60)
    threads[0].join(30)
    stop.set()
    with pg_engine.connect() as conn:
        every = [e.id for e in outbox.read(conn, limit=10_000)]
    assert len(every) == total
    assert read_ids == every  # nothing skipped, nothing twice, in order


def test_retention_prunes_old_events_and_never_reuses_an_id(
    db_url: str,
) -> None:
    engine = database.open_database(db_url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for n in range(5):
            outbox.emit(conn, Event("record.created", f"record:{n}", {"n": n}))
        outbox.emit(conn, Event("contact.forgotten", "contact:abc", {"address": "x@y.test"}))
        conn.execute(suppressions.insert().values(digest="abc", created_at=now))
        ids = [e.id for e in outbox.read(conn)]
        # The first three are 100 days old.
        conn.execute(
            update(events_table)
            .where(events_table.c.id.in_(ids[:3]))
            .values(created_at=now - timedelta(days=100))
        )
    with engine.begin() as conn:
        assert event_upkeep.prune_old(conn, timedelta(days=90), now) == 3
        assert [e.id for e in outbox.read(conn)] == ids[3:]
        # contact.forgotten stays keep_forgotten long, then goes.
        assert event_upkeep.prune_forgotten(conn, timedelta(days=7), now) == 0
        assert event_upkeep.prune_forgotten(conn, timedelta(days=7), now + timedelta(days=8)) == 1
        # The webhook deliverer's way: only contact.forgotten rows are dropped by it.
        assert event_upkeep.drop_delivered_forgotten(conn, ids) == 0
        # Every event gone, the newest included: the next id is still a new one.
        assert event_upkeep.prune_old(conn, timedelta(days=1), now + timedelta(days=2)) == 2
        assert outbox.read(conn) == []
    with engine.begin() as conn:
        outbox.emit(conn, Event("record.created", "record:9", {"n": 9}))
        outbox.emit(conn, Event("contact.forgotten", "contact:def", {"address": "z@y.test"}))
        fresh = outbox.read(conn)
        assert fresh[0].id > max(ids)
        assert event_upkeep.drop_delivered_forgotten(conn, [e.id for e in fresh]) == 1
        assert [e.type for e in outbox.read(conn)] == ["record.created"]
    engine.dispose()


def test_retention_keeps_events_a_webhook_has_still_to_deliver(db_url: str) -> None:
    """[events] keep never deletes an event an endpoint has pending or not yet taken: the
    deliverer reads what it sends from the outbox, and took an event gone from it for
    delivered (a receiver down longer than `keep` silently lost its backlog)."""
    from syncd.webhooks import queue

    hooks = [
        {"name": n, "url": f"https://{n}.example/h", "secret": "whsec_" + "A" * 24}
        for n in ("crm", "late")
    ]
    config = parse_config(
        {"database": {"url": db_url}, "events": {"keep": "30d"}, "webhook": hooks}
    )
    crm, late = config.webhook
    engine = database.open_database(db_url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for n in range(4):
            outbox.emit(conn, Event("record.created", f"record:{n}", {"n": n}))
        ids = [e.id for e in outbox.read(conn)]
        queue.ensure_endpoints(conn, [crm, late])
        queue.take_new(conn, crm)  # crm has all four pending ...
        # ... and delivered the first two (their rows go); `late` delivered the first three.
        conn.execute(delete(queue.D).where(queue.D.c.event_id.in_(ids[:2])))
        conn.execute(update(queue.E).where(queue.E.c.name == "late").values(last_event_id=ids[2]))
    later = now + timedelta(days=31)
    assert events_upkeep(engine, config, later)["pruned"] == 2
    with engine.connect() as conn:
        assert [e.id for e in outbox.read(conn)] == ids[2:]
        claimed = queue.claim(conn, "crm", "d1", limit=10, lease=timedelta(seconds=60))
        assert all(c.event is not None for c in claimed) and len(claimed) == 2
    engine.dispose()


def test_the_upkeep_prunes_by_the_events_config(db_url: str) -> None:
    """What the daemon's timer and `syncd sync` run: [events] keep, and keep_forgotten when
    no [[webhook]] delivers contact.forgotten."""
    config = parse_config({"database": {"url": db_url}, "events": {"keep": "30d"}})
    engine = database.open_database(db_url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for n in range(3):
            outbox.emit(conn, Event("record.created", f"record:{n}", {"n": n}))
        outbox.emit(conn, Event("contact.forgotten", "contact:abc", {"address": "x@y.test"}))
        conn.execute(suppressions.insert().values(digest="abc", created_at=now))
    assert events_upkeep(engine, config, now + timedelta(days=1)) == {
        "held": 0, "pruned": 0, "forgotten_pruned": 0,
    }  # fmt: skip
    assert events_upkeep(engine, config, now + timedelta(days=8))["forgotten_pruned"] == 1
    assert events_upkeep(engine, config, now + timedelta(days=31))["pruned"] == 3
    with engine.connect() as conn:
        assert outbox.read(conn) == []
    engine.dispose()


def test_a_forgotten_address_an_endpoint_failed_still_leaves_after_keep_forgotten(
    db_url: str,
) -> None:
    """contact.forgotten goes once every endpoint has it; one that failed it (a 4xx, 24 h of
    errors) or was disabled never will, and the address must not stay for ever: after
    keep_forgotten it goes anyway, with the failed delivery that would only send "erased"."""
    from syncd.webhooks import queue

    hook = {"name": "crm", "url": "https://crm.example/h", "secret": "whsec_" + "A" * 24}
    config = parse_config({"database": {"url": db_url}, "webhook": [hook]})
    engine = database.open_database(db_url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        outbox.emit(conn, Event("record.created", "record:1", {"n": 1}))
        outbox.emit(conn, Event("contact.forgotten", "contact:abc", {"address": "x@y.test"}))
        conn.execute(suppressions.insert().values(digest="abc", created_at=now))
        queue.ensure_endpoints(conn, config.webhook)
        queue.take_new(conn, config.webhook[0])
        conn.execute(update(queue.D).values(state="failed", ready=0))
    assert events_upkeep(engine, config, now + timedelta(days=1))["forgotten_pruned"] == 0
    assert events_upkeep(engine, config, now + timedelta(days=8))["forgotten_pruned"] == 1
    with engine.connect() as conn:
        assert [e.type for e in outbox.read(conn)] == ["record.created"]
        left = conn.execute(queue.D.select()).all()
        assert [(row.subject, row.state) for row in left] == [("record:1", "failed")]
    engine.dispose()
