"""PostgreSQL's search index keeps 32 records to a row: its lock order against the records'
own locks (a deletion takes no row of the index).

Each test pauses one transaction (a real code path) at a point it really passes through, so
that a second, real, transaction runs in the window; the pause only makes the timing sure.
Pass: both transactions commit.  A deadlock aborts one of them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, insert

from syncd.domain.search_text import parse_query
from syncd.schema.tables import records
from syncd.store import event_privacy, logged_records, privacy, search_index
from syncd.store.directory import load_directory

pytestmark = pytest.mark.postgres
T0 = datetime(2024, 1, 1, tzinfo=UTC)
LONG = " ".join(f"paragraph{i} quarterly figures" for i in range(200))  # ~6 kB: a row of its own


def _store(eng: Engine, bodies: dict[int, tuple[str, str]]) -> None:
    with eng.begin() as conn:
        conn.execute(
            insert(records),
            [
                {"id": rid, "key": f"logged:r{rid}", "kind": kind, "direction": "outbound",
                 "subject": f"Note {rid}", "body": body,
                 "occurred_at": T0 + timedelta(minutes=rid), "created_at": T0}
                for rid, (kind, body) in bodies.items()
            ],
        )  # fmt: skip
        search_index.rebuild(conn)


def _found(eng: Engine, words: str) -> set[int]:
    with eng.connect() as conn:
        return search_index.matching_ids(conn, parse_query(words))


def _in_thread(eng: Engine, work: Callable[[Any], object], errors: list[str]) -> threading.Thread:
    def run() -> None:
        try:
            with eng.begin() as conn:
                work(conn)
        except Exception as err:
            errors.append("second: " + type(err).__name__ + ": " + str(err).splitlines()[0])

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _first(eng: Engine, work: Callable[[Any], object], errors: list[str]) -> None:
    try:
        with eng.begin() as conn:
            work(conn)
    except Exception as err:
        errors.append("first: " + type(err).__name__ + ": " + str(err).splitlines()[0])


def test_forget_and_deleting_a_logged_note_that_names_the_person(
    pg_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`syncd forget jane@...` while a rep deletes a logged note (id 40) whose text names
    jane@...: forget holds the note's block from before its sweep (the whole database) to its
    commit, the deletion locks the note then waits for the block in its trigger, and the
    sweep then waits for the note.  A row-per-record index let the deletion commit first."""
    _store(
        pg_engine, {40: ("note", "called jane@example.com about renewal"), 41: ("note", "other")}
    )
    assert _found(pg_engine, "jane@example.com") == {40}
    errors: list[str] = []
    threads: list[threading.Thread] = []
    real_before = event_privacy.Before

    def before(*args: Any, **kwargs: Any) -> Any:  # right after forget's hold()
        threads.append(
            _in_thread(
                pg_engine, lambda c: logged_records.delete_record(c, 40, actor="rep"), errors
            )
        )
        time.sleep(1.0)  # forget's sweep of every table: a rep's click lands in it
        return real_before(*args, **kwargs)

    monkeypatch.setattr(event_privacy, "Before", before)
    _first(pg_engine, lambda c: privacy.forget(c, "jane@example.com", load_directory(c)), errors)
    threads[0].join(30)
    assert errors == []


def test_a_rebuild_and_a_deletion_of_a_long_record(
    pg_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`syncd db reindex` while `syncd forget` (or a rep) deletes a record whose line is long
    (a row of its own, id 5): the rebuild has locked block 0 and is reading the records;
    the deletion's cascade takes the own row (or its key check the record), then its
    trigger waits for block 0; the rebuild then writes the own row and waits for it."""
    _store(pg_engine, {rid: ("note", f"shared word{rid}") for rid in range(1, 8)})
    with pg_engine.begin() as conn:
        conn.execute(records.update().where(records.c.id == 5).values(body="secretcase " + LONG))
        search_index.reindex_records(conn, [5])
    assert _found(pg_engine, "secretcase") == {5}
    errors: list[str] = []
    threads: list[threading.Thread] = []
    real_terms = search_index.current_terms

    def terms(conn: Any, ids: list[int]) -> dict[int, str]:  # rebuild's read of a range
        found = real_terms(conn, ids)
        if not threads:
            threads.append(
                _in_thread(
                    pg_engine, lambda c: c.execute(delete(records).where(records.c.id == 5)), errors
                )
            )
            time.sleep(1.0)  # reading 5,120 records' text: the deletion lands in it
        return found

    monkeypatch.setattr(search_index, "current_terms", terms)
    _first(pg_engine, search_index.rebuild, errors)
    threads[0].join(30)
    assert errors == []
    assert _found(pg_engine, "secretcase") == set() and _found(pg_engine, "shared") == {
        1,
        2,
        3,
        4,
        6,
        7,
    }


def test_a_meeting_reindex_and_a_deletion_of_a_long_record(
    pg_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """reindex_records (a calendar sync, a logged edit, forget's last step) of a long record
    while another transaction deletes it: the same two orders (block then own row; own row
    then block).  With a row per record, a deletion in this window (before reindex_records' first write)
    commits first and the reindex finds nothing to index."""
    _store(pg_engine, {rid: ("note", f"shared word{rid}") for rid in range(1, 8)})
    with pg_engine.begin() as conn:
        conn.execute(records.update().where(records.c.id == 5).values(body="secretcase " + LONG))
        search_index.reindex_records(conn, [5])
    errors: list[str] = []
    threads: list[threading.Thread] = []
    real_unindex = search_index.unindex_records

    def unindex(conn: Any, ids: Any) -> None:  # reindex_records' first write (after hold())
        if not threads:
            threads.append(
                _in_thread(
                    pg_engine, lambda c: c.execute(delete(records).where(records.c.id == 5)), errors
                )
            )
            time.sleep(1.0)
        real_unindex(conn, ids)

    monkeypatch.setattr(search_index, "unindex_records", unindex)
    _first(pg_engine, lambda c: search_index.reindex_records(c, [5, 6]), errors)
    threads[0].join(30)
    assert errors == []
    assert _found(pg_engine, "secretcase") == set()


def _mail(uid: int) -> Any:
    from syncd.domain.capture import Participant
    from syncd.domain.matching import Match
    from syncd.store.capture import CapturedMessage

    jane = Participant("jane@outside.example", "Jane Roe", "from", True)
    me = Participant("alice@example.com", "Alice", "to", False)
    return CapturedMessage(
        uid=uid, message_id=f"m{uid}@outside.example", direction="inbound",
        subject=f"Order {uid}", snippet="hello", body=None,
        occurred_at=T0 + timedelta(minutes=uid), in_reply_to=None, references=[],
        participants=[(jane, Match(None, None, None, "no-match")),
                      (me, Match(None, None, None, "internal"))],
    )  # fmt: skip


def _folder(uids: range) -> Any:
    from syncd.store.capture import FolderBatch

    batch = FolderBatch("alice", "INBOX", uidvalidity=7, last_uid=uids[-1], highestmodseq=None)
    batch.captured = [_mail(uid) for uid in uids]
    return batch


def test_forget_and_a_capture_of_the_persons_new_mail(
    pg_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """jane@outside.example (not a contact: in the unmatched queue) mailed alice three times;
    `syncd forget jane@...` runs while alice's daemon captures jane's next mail.  The
    capture upserts jane's queue row, then its index write waits for the block forget holds;
    forget then drops jane's queue row and waits for the capture."""
    from syncd.store.capture import save_batch

    with pg_engine.begin() as conn:
        save_batch(conn, _folder(range(1, 4)))
    assert _found(pg_engine, "jane") != set()
    errors: list[str] = []
    threads: list[threading.Thread] = []
    real_before = event_privacy.Before

    def before(*args: Any, **kwargs: Any) -> Any:  # right after forget's hold()
        threads.append(_in_thread(pg_engine, lambda c: save_batch(c, _folder(range(4, 5))), errors))
        time.sleep(1.0)
        return real_before(*args, **kwargs)

    monkeypatch.setattr(event_privacy, "Before", before)
    _first(
        pg_engine, lambda c: privacy.forget(c, "jane@outside.example", load_directory(c)), errors
    )
    threads[0].join(30)
    assert errors == []
