"""PostgreSQL's search index keeps 32 records to a row (store/search_pg.py): writers that
share a row, deletions, the largest rows and the bound on what a search reads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, insert, text

from syncd.domain.search_text import MAX_TERMS_BYTES, index_terms, parse_query
from syncd.schema.tables import records
from syncd.store import database, search_index, search_pg
from tests.servers.postgres import scratch_database

pytestmark = pytest.mark.postgres

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def pg(pg_admin: str) -> Iterator[Engine]:
    with scratch_database(pg_admin) as url:
        engine = database.open_database(url)
        yield engine
        engine.dispose()


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


def test_two_writers_of_one_row_both_keep_their_records(pg: Engine) -> None:
    """Two daemons capture records that share a row (ids 3 and 4): the second waits for the
    first's row and adds its line beside the first's, instead of overwriting it."""
    _store(pg, {3: "renewal quote", 4: "renewal contract"})
    first = pg.connect()
    first.begin()
    search_index.add(first, {3: index_terms(["renewal quote"])})
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with pg.begin() as conn:
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
    assert _found(pg, "renewal") == {3, 4}
    assert _found(pg, "quote") == {3} and _found(pg, "contract") == {4}


def test_deleting_records_takes_only_their_lines(pg: Engine) -> None:
    _store(pg, {rid: f"shared word{rid}" for rid in range(1, 71)})
    with pg.begin() as conn:
        search_index.reindex_records(conn, list(range(1, 71)))
    gone = {5, 31, 32, 33, *range(64, 71)}
    with pg.begin() as conn:
        conn.execute(delete(records).where(records.c.id.in_(gone)))
    assert _found(pg, "shared") == set(range(1, 71)) - gone
    assert _found(pg, "word32") == set() and _found(pg, "word34") == {34}
    with pg.connect() as conn:  # a deleted record's line is left empty, its neighbours in place
        lines = conn.scalar(text("SELECT terms FROM record_search WHERE block = 1")).split("\n")
    assert lines[0] == lines[1] == "" and lines[2] == "note 34 shared word34"


def test_a_row_of_records_at_the_bound_is_indexed(pg: Engine) -> None:
    """32 records of distinct 40-character words, each cut at MAX_TERMS_BYTES: the row's
    lexemes stay under PostgreSQL's 1 MB for a tsvector."""
    bodies = {rid: " ".join(f"r{rid:02d}w{i:036d}" for i in range(2_000)) for rid in range(32, 64)}
    _store(pg, bodies)
    with pg.begin() as conn:
        search_index.reindex_records(conn, list(bodies))
        size = conn.scalar(text("SELECT octet_length(terms) FROM record_search WHERE block = 1"))
    assert size is not None and 32 * (MAX_TERMS_BYTES - 100) < size <= 32 * MAX_TERMS_BYTES + 31
    assert _found(pg, f"r47w{0:036d}") == {47}
    assert _found(pg, f"r47w{1_999:036d}") == set()  # beyond the record's bound


def test_a_ranked_search_reads_a_bounded_number_of_rows(
    pg: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A word in every record that an excluded word rules out in the newest ones: the
    ranked search stops after MAX_BLOCKS rows; the unbounded one (forget's) reads them all."""
    _store(pg, {rid: "common newer" if rid >= 96 else "common" for rid in range(1, 200)})
    with pg.begin() as conn:
        search_index.reindex_records(conn, list(range(1, 200)))
    monkeypatch.setattr(search_pg, "MAX_BLOCKS", 3)
    monkeypatch.setattr(search_pg, "FIRST_BATCH", 1)
    query = parse_query("common -newer")
    with pg.connect() as conn:
        assert search_index.search(conn, query, limit=20) == []  # rows 6, 5, 4: ids 128-199
        assert search_index.matching_ids(conn, query) == set(range(1, 96))
    monkeypatch.setattr(search_pg, "MAX_BLOCKS", 4)  # row 3: ids 96-127, all "newer"
    with pg.connect() as conn:
        assert search_index.search(conn, query, limit=20) == []
    monkeypatch.setattr(search_pg, "MAX_BLOCKS", 5)  # row 2: ids 64-95
    with pg.connect() as conn:
        assert [rid for rid, _ in search_index.search(conn, query, limit=20)] == list(
            range(95, 75, -1)
        )
