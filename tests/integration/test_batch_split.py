"""A batch the database refuses is split until the one bad message is quarantined.

The bad values are injected straight into the store, past the bounding that normally
keeps them out, so the split-and-quarantine path is proven on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import OperationalError

from syncd.domain.capture import Participant
from syncd.domain.matching import Match
from syncd.engine.imap import mail_sync
from syncd.engine.imap.mail_sync import save_or_split
from syncd.schema.tables import (
    folder_cursors,
    provenance,
    quarantine,
    records,
    skipped_messages,
    source_states,
)
from syncd.store import database
from syncd.store.capture import CapturedMessage, FolderBatch, save_batch

LAST_UID = 30  # UIDs 26..30 were skipped mail: the cursor must still reach 30


class Crash(Exception):
    pass


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = database.open_database(db_url)
    yield engine
    engine.dispose()


def _message(uid: int, **overrides: Any) -> CapturedMessage:
    outsider = Participant(f"person{uid}@outside.example", f"Person {uid}", "from", True)
    me = Participant("alice@example.com", "Alice", "to", False)
    values: dict[str, Any] = {
        "uid": uid,
        "message_id": f"m{uid}@outside.example",
        "direction": "inbound",
        "subject": f"Message {uid}",
        "snippet": "hello",
        "body": None,
        "occurred_at": datetime(2024, 6, 3, tzinfo=UTC) + timedelta(minutes=uid),
        "in_reply_to": None,
        "references": [],
        "participants": [
            (outsider, Match(None, None, None, "no-match")),
            (me, Match(None, None, None, "internal")),
        ],
    }
    values.update(overrides)
    return CapturedMessage(**values)


def _poison(kind: str) -> dict[str, Any]:
    if kind == "not-null":  # a NOT NULL column left empty: IntegrityError on both engines
        return {"direction": cast(str, None)}
    # A lone surrogate: no driver can encode it (UnicodeEncodeError, not a DBAPI error).
    return {"subject": "Poison \ud800"}


def _batch(poisoned: dict[int, dict[str, Any]]) -> FolderBatch:
    batch = FolderBatch("alice", "INBOX", uidvalidity=7, last_uid=LAST_UID, highestmodseq=None)
    batch.captured = [_message(uid, **poisoned.get(uid, {})) for uid in range(1, 26)]
    batch.quarantined = [(26, "unparseable: no From")]  # a parse-time quarantine
    batch.skipped = 4
    return batch


def _state(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {
            "records": sorted(conn.scalars(select(records.c.subject))),
            "sources": sorted(conn.scalars(select(provenance.c.uid))),
            "quarantine": sorted(
                (int(uid), reason)
                for uid, reason in conn.execute(select(quarantine.c.item, quarantine.c.reason))
            ),
            "cursor": conn.scalar(select(folder_cursors.c.last_uid)),
            "skipped": conn.scalar(select(func.sum(source_states.c.skipped))),
        }


@pytest.mark.parametrize("kind", ["not-null", "surrogate"])
def test_one_refused_message_is_quarantined_and_the_rest_commit(engine: Engine, kind: str) -> None:
    saved = save_or_split(engine, _batch({13: _poison(kind)}))

    assert saved.captured == 24
    assert [uid for uid, _ in saved.quarantined] == [13]
    reason = saved.quarantined[0][1]
    expected = "IntegrityError" if kind == "not-null" else "UnicodeEncodeError"
    assert reason.startswith("store refused: ") and expected in reason
    # The reason names the error, never the statement or the values.
    assert "INSERT" not in reason.upper() and "Poison" not in reason and "\ud800" not in reason

    state = _state(engine)
    assert state["sources"] == [uid for uid in range(1, 26) if uid != 13]
    assert len(state["records"]) == 24 and "Message 13" not in state["records"]
    assert state["quarantine"] == [(13, reason), (26, "unparseable: no From")]
    assert state["cursor"] == LAST_UID
    assert state["skipped"] == 4

    # Replaying the same batch (a crash before the caller saw the result) changes nothing
    # but the skip counter.
    save_or_split(engine, _batch({13: _poison(kind)}))
    assert {**_state(engine), "skipped": 4} == state


def test_every_refused_message_of_a_batch_is_found(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    fenced: list[Connection] = []
    saved_in: list[Connection] = []

    def counting_save(conn: Connection, batch: FolderBatch) -> int:
        saved_in.append(conn)
        return save_batch(conn, batch)

    monkeypatch.setattr(mail_sync, "save_batch", counting_save)
    saved = save_or_split(
        engine, _batch({1: _poison("not-null"), 25: _poison("surrogate")}), fence=fenced.append
    )
    assert [uid for uid, _ in saved.quarantined] == [1, 25]
    state = _state(engine)
    assert state["sources"] == list(range(2, 25))
    assert state["cursor"] == LAST_UID
    # Every transaction of the split ran the fence (a lease check) before it wrote.
    assert len(saved_in) > 2 and fenced == saved_in


def test_a_lost_connection_quarantines_nothing(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lost(conn: Any, batch: FolderBatch) -> int:
        raise OperationalError("INSERT ...", {}, Exception("server closed the connection"))

    monkeypatch.setattr(mail_sync, "save_batch", lost)
    with pytest.raises(OperationalError):
        save_or_split(engine, _batch({}))
    state = _state(engine)
    assert state["quarantine"] == [] and state["sources"] == [] and state["cursor"] is None


def test_a_crash_while_splitting_loses_nothing_and_doubles_nothing(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    poisoned = {7: _poison("not-null"), 20: _poison("surrogate")}
    calls = {"n": 0}

    def crashing(conn: Any, batch: FolderBatch) -> int:
        calls["n"] += 1
        if calls["n"] == 6:
            raise Crash("killed mid-split")
        return save_batch(conn, batch)

    monkeypatch.setattr(mail_sync, "save_batch", crashing)
    with pytest.raises(Crash):
        save_or_split(engine, _batch(poisoned))
    partial = _state(engine)
    # The cursor never passes a message that is neither stored nor quarantined.
    held = {uid for uid, _ in partial["quarantine"]}
    assert partial["cursor"] is not None
    assert all(uid in partial["sources"] or uid in held for uid in range(1, partial["cursor"] + 1))
    assert partial["cursor"] < LAST_UID

    monkeypatch.setattr(mail_sync, "save_batch", save_batch)
    save_or_split(engine, _batch(poisoned))
    crashed = _state(engine)
    crashed.pop("skipped")  # a counter: the replayed part counts its skips again
    assert crashed["sources"] == [uid for uid in range(1, 26) if uid not in poisoned]
    assert [uid for uid, _ in crashed["quarantine"]] == [7, 20, 26]
    assert crashed["cursor"] == LAST_UID
    assert len(crashed["records"]) == len(set(crashed["records"])) == 23


@pytest.mark.parametrize("kind", ["not-null", "surrogate"])
def test_skip_rows_beside_a_quarantined_message_are_kept(engine: Engine, kind: str) -> None:
    # Odd UIDs are captured, even ones were skipped by a rule: whichever part the split
    # narrows down to around the refused message still holds the skip rows of its range.
    batch = FolderBatch("alice", "INBOX", uidvalidity=7, last_uid=LAST_UID, highestmodseq=None)
    batch.captured = [
        _message(uid, **(_poison(kind) if uid == 13 else {})) for uid in range(1, 30, 2)
    ]
    batch.skipped_uids = [(uid, "bulk") for uid in range(2, 31, 2)]
    batch.skipped = len(batch.skipped_uids)

    saved = save_or_split(engine, batch)

    assert [uid for uid, _ in saved.quarantined] == [13]
    with engine.connect() as conn:
        skipped = sorted(
            conn.execute(select(skipped_messages.c.uid, skipped_messages.c.rule)).all()
        )
    assert skipped == [(uid, "bulk") for uid in range(2, 31, 2)]
    assert _state(engine)["cursor"] == LAST_UID
