"""PostgreSQL's search index keeps 32 records to a row (store/search_pg.py): writers that
share a row, deletions, the largest rows and the bound on what a search reads."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, insert, text

from syncd.domain.search_text import index_terms, parse_query
from syncd.schema.tables import records
from syncd.store import search_index, search_pg

pytestmark = pytest.mark.postgres

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _store(engine: Engine, bodies: dict[int, str]) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(records),
            [
                {"id": rid, "key": f"note:{rid}", "kind": "note", "direction": "outbound",
                 "subject": f"Note {rid}", "body": body,
                 "occurred_at": T0 + timedelta(minutes=rid), "created_at": T0}
                for rid, body in bodies.items()
            ],
        )  # fmt: skip


def _found(engine: Engine, words: str) -> set[int]:
    with engine.connect() as conn:
        return search_index.matching_ids(conn, parse_query(words))


def test_two_writers_of_one_row_both_keep_their_records(pg_engine: Engine) -> None:
    """Two daemons capture records that share a row (ids 3 and 4): the second waits for the
    first's row and adds its line beside the first's, instead of overwriting it."""
    _store(pg_engine, {3: "renewal quote", 4: "renewal contract"})
    first = pg_engine.connect()
    first.begin()
    search_index.add(first, {3: index_terms(["renewal quote"])})
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with pg_engine.begin() as conn:
                search_index.add(conn, {4: index_terms(["renewal contract"])})
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(1.0)  # it waits on the first transaction's row
    assert thread.is_alive()
    first.commit()
    first.close()
    thread.join(30)
    assert not thread.is_alive() and errors == []
    assert _found(pg_engine, "renewal") == {3, 4}
    assert _found(pg_engine, "quote") == {3} and _found(pg_engine, "contract") == {4}


def test_deleting_records_takes_only_their_lines(pg_engine: Engine) -> None:
    """A deletion leaves the index alone (it takes no row of it): searches show no record
    that is gone at once, and the deleter's reindex (forget's, a logged record's deletion)
    empties its line, its neighbours' in place."""
    _store(pg_engine, {rid: f"shared word{rid}" for rid in range(1, 71)})
    with pg_engine.begin() as conn:
        search_index.reindex_records(conn, list(range(1, 71)))
    gone = {5, 31, 32, 33, *range(64, 71)}
    with pg_engine.begin() as conn:
        conn.execute(delete(records).where(records.c.id.in_(gone)))
    assert _found(pg_engine, "shared") == set(range(1, 71)) - gone
    assert _found(pg_engine, "word32") == set() and _found(pg_engine, "word34") == {34}
    with pg_engine.begin() as conn:
        search_index.reindex_records(conn, sorted(gone))
        lines = conn.scalar(text("SELECT terms FROM record_search WHERE block = 1")).split("\n")
    assert lines[0] == lines[1] == "" and lines[2] == "note 34 shared word34"


def test_long_lines_have_rows_of_their_own(pg_engine: Engine) -> None:
    """A record's tokens over LINE_MAX bytes (a mail's whole body) are kept in a row of its
    own: reading its neighbours' short lines never decompresses it, and the longest a
    record may have (its text cut at 100,000 characters, each token at 40: here 2,400
    distinct tokens of 36 four-byte letters, 350 kB) fits PostgreSQL's 1 MB for a row's
    words."""
    widest = " ".join(chr(0x10400 + i % 40) * 36 + f"{i:04d}" for i in range(2_400))
    bodies = {33: widest, 34: "short note", 35: "long " * 400 + "tail"}
    _store(pg_engine, bodies)
    with pg_engine.begin() as conn:
        search_index.reindex_records(conn, list(bodies))
        own = conn.execute(text("SELECT record_id FROM record_search_own ORDER BY 1")).scalars()
        assert list(own) == [33, 35]
        line = conn.scalar(text("SELECT terms FROM record_search WHERE block = 1"))
    assert line == "\n".join(["", "", "note 34 short note"])
    assert _found(pg_engine, "tail") == {35} and _found(pg_engine, "short") == {34}
    assert _found(pg_engine, (chr(0x10400 + 2_399 % 40) * 36 + "2399").lower()) == {33}
    with pg_engine.begin() as conn:  # shorter now: back to its block
        conn.execute(records.update().where(records.c.id == 35).values(body="brief"))
        search_index.reindex_records(conn, [35])
        assert list(conn.execute(text("SELECT record_id FROM record_search_own")).scalars()) == [33]
    assert _found(pg_engine, "tail") == set() and _found(pg_engine, "brief") == {35}
    with pg_engine.begin() as conn:
        conn.execute(delete(records).where(records.c.id == 33))
    assert _found(pg_engine, "note") == {34, 35}


def test_a_ranked_search_reads_a_bounded_share_of_the_index(
    pg_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A word in every record that an excluded word rules out in the newest ones: the
    ranked search stops after MAX_BYTES of lines; the unbounded one (forget's) reads all."""
    _store(pg_engine, {rid: "common newer" if rid >= 96 else "common" for rid in range(1, 200)})
    with pg_engine.begin() as conn:
        search_index.reindex_records(conn, list(range(1, 200)))
    monkeypatch.setattr(search_pg, "FIRST_BATCH", 1)
    monkeypatch.setattr(search_pg, "MAX_BYTES", 1)  # the first batch: row 6, ids 192-199
    query = parse_query("common -newer")
    with pg_engine.connect() as conn:
        assert search_index.search(conn, query, limit=20) == []
        assert search_index.matching_ids(conn, query) == set(range(1, 96))
    monkeypatch.setattr(search_pg, "MAX_BYTES", 10_000)
    with pg_engine.connect() as conn:
        assert [rid for rid, _ in search_index.search(conn, query, limit=20)] == list(
            range(95, 75, -1)
        )
        # A filter's few records are read whatever the bound: the old ones are found.
        old = search_index.Filters(before=T0 + timedelta(minutes=10))
        monkeypatch.setattr(search_pg, "MAX_BYTES", 1)
        assert {rid for rid, _ in search_index.search(conn, query, old, limit=20)} == set(
            range(1, 10)
        )
        # A filter's records are read up to their own bound: newest first, ids 149-118 (all
        # "newer") fill the first batch of 32.
        recent = search_index.Filters(before=T0 + timedelta(minutes=150))
        monkeypatch.setattr(search_pg, "NARROW_MAX_BYTES", 1)
        assert search_index.search(conn, query, recent, limit=20) == []
        monkeypatch.setattr(search_pg, "NARROW_MAX_BYTES", 10_000)
        assert [rid for rid, _ in search_index.search(conn, query, recent, limit=20)] == list(
            range(95, 75, -1)
        )


def test_a_rebuild_and_a_deletion_at_once_leave_no_trace(pg_engine: Engine) -> None:
    """`syncd db reindex` (one transaction) while a record is deleted: once both commit no
    search finds it, and its deleter's reindex (as forget's) leaves no line of it."""
    _store(pg_engine, {rid: f"shared word{rid}" for rid in range(1, 8)})
    with pg_engine.begin() as conn:
        conn.execute(records.update().where(records.c.id == 5).values(body="alice secretcase"))
        search_index.rebuild(conn)
    assert _found(pg_engine, "secretcase") == {5}
    rebuilding = pg_engine.connect()
    rebuilding.begin()
    search_index.rebuild(rebuilding)
    errors: list[BaseException] = []

    def forget() -> None:
        try:
            with pg_engine.begin() as conn:
                conn.execute(delete(records).where(records.c.id == 5))
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=forget)
    thread.start()
    thread.join(1.0)
    rebuilding.commit()
    rebuilding.close()
    thread.join(30)
    assert not thread.is_alive() and errors == []
    assert _found(pg_engine, "secretcase") == set() and _found(pg_engine, "alice") == set()
    assert _found(pg_engine, "shared") == {1, 2, 3, 4, 6, 7}
    with pg_engine.begin() as conn:
        search_index.reindex_records(conn, [5])
        assert "secretcase" not in conn.scalar(text("SELECT terms FROM record_search"))


def test_forget_and_a_calendar_sync_sharing_rows_do_not_deadlock(pg_engine: Engine) -> None:
    """forget deletes a record (row 10) then reindexes one it redacted and the deleted one
    (rows 2 and 10, in order); a calendar sync reindexes two others (rows 2 and 10).  A
    deletion takes no row of the index: one waits for the other and both commit."""
    _store(pg_engine, {rid: f"shared word{rid}" for rid in (70, 71, 330, 331)})
    with pg_engine.begin() as conn:
        search_index.rebuild(conn)
    forget = pg_engine.connect()
    forget.begin()
    forget.execute(delete(records).where(records.c.id == 330))
    errors: list[BaseException] = []

    def sync() -> None:
        try:
            with pg_engine.begin() as conn:
                search_index.reindex_records(conn, [71, 331])
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=sync)
    thread.start()
    thread.join(1.0)
    search_index.reindex_records(forget, [70, 330])
    forget.commit()
    forget.close()
    thread.join(30)
    assert not thread.is_alive() and errors == []
    assert _found(pg_engine, "shared") == {70, 71, 331}


def test_a_long_mail_in_another_script_is_found_by_its_last_words(db_engine: Engine) -> None:
    words = ["переговоры", "контракт", "поставка", "оборудование", "стоимость"]
    body = " ".join(words[i % 5] + str(i % 7) for i in range(2_500)) + " финальнаяцена"
    _store(db_engine, {1: body})
    with db_engine.begin() as conn:
        search_index.rebuild(conn)
    assert _found(db_engine, "финальнаяцена") == {1}
    with db_engine.connect() as conn:
        assert search_index.search(conn, parse_query("Финальнаяцена"))[0][0] == 1


def test_old_meetings_behind_many_newer_mails_are_found(
    db_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """50 meetings about the budget, then 5,000 mails that say it too: a search among
    meetings reads the meetings' lines, however little a ranked search may read."""
    _store(
        db_engine,
        {rid: "budget review" if rid <= 50 else "budget overdue" for rid in range(1, 5_051)},
    )
    with db_engine.begin() as conn:
        conn.execute(records.update().where(records.c.id <= 50).values(kind="meeting"))
        search_index.rebuild(conn)
    monkeypatch.setattr(search_pg, "MAX_BYTES", 2_000)
    meetings = search_index.Filters(kinds=("meeting",))
    with db_engine.connect() as conn:
        ranked = search_index.search(conn, parse_query("budget"), meetings, limit=100)
    assert {rid for rid, _ in ranked} == set(range(1, 51))
    monkeypatch.undo()
    with db_engine.connect() as conn:
        ranked = search_index.search(conn, parse_query("budget -overdue"), limit=100)
    assert {rid for rid, _ in ranked} == set(range(1, 51))
