"""Whole-database periodic work runs once per interval across a fleet (store/turns.py)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from syncd.schema.tables import settings
from syncd.store.database import open_database
from syncd.store.turns import take_turn

EVERY = timedelta(minutes=5)


def test_one_taker_per_interval_and_the_next_after_it(db_url: str) -> None:
    engine = open_database(db_url)
    try:
        with engine.begin() as conn:
            assert take_turn(conn, "tasks", EVERY)  # never taken: free
        with engine.begin() as conn:
            assert not take_turn(conn, "tasks", EVERY)  # another daemon, a moment later
            assert take_turn(conn, "other work", EVERY)  # turns are per kind of work
        with engine.begin() as conn:  # an interval later (the stamp moved back)
            stamp = conn.scalar(select(settings.c.value).where(settings.c.name == "turn:tasks"))
            assert stamp
            earlier = datetime.fromisoformat(stamp) - EVERY
            conn.execute(
                update(settings)
                .where(settings.c.name == "turn:tasks")
                .values(value=earlier.isoformat())
            )
        with engine.begin() as conn:
            assert take_turn(conn, "tasks", EVERY)
        with engine.begin() as conn:  # stamped by a database clock since set back an hour
            conn.execute(
                update(settings)
                .where(settings.c.name == "turn:tasks")
                .values(value=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
            )
        with engine.begin() as conn:
            assert take_turn(conn, "tasks", EVERY)  # free, not held off for an hour
            assert not take_turn(conn, "tasks", EVERY)  # and stamped with the right time
        with engine.begin() as conn:  # a hand-edited stamp frees the turn rather than jam it
            conn.execute(
                update(settings).where(settings.c.name == "turn:tasks").values(value="garbage")
            )
        with engine.begin() as conn:
            assert take_turn(conn, "tasks", EVERY)
    finally:
        engine.dispose()


def test_daemons_asking_at_once_get_one_turn(db_url: str) -> None:
    engine = open_database(db_url)
    start = threading.Barrier(4)
    taken: list[bool] = []
    lock = threading.Lock()

    def ask() -> None:
        start.wait()
        with engine.begin() as conn:
            mine = take_turn(conn, "tasks", EVERY)
        with lock:
            taken.append(mine)

    try:
        threads = [threading.Thread(target=ask) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(taken) == [False, False, False, True]
    finally:
        engine.dispose()
