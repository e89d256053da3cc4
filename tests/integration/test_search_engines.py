"""SQLite FTS5 and PostgreSQL full text find the same records for the same queries.

Hypothesis writes records (words of several scripts, accents, punctuation, any text) into
both engines through ``reindex_records`` and asks both the same queries: the sets of ids
must be equal to each other and to what the tokens themselves say (a plain Python match).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, func, insert, select

from syncd.domain.search_text import Query, QueryError, Term, parse_query, tokens
from syncd.schema.tables import customers, record_customers, records
from syncd.store import database, search_index, search_pg
from tests.servers.postgres import scratch_database

pytestmark = pytest.mark.postgres

WORDS = [
    "price", "list", "Café", "cafe", "CAFÉS", "quote", "quotation", "naïve", "x1",
    "报价", "关于报价的问题", "东京", "東京タワー", "タワー", "한국어", "국어", "价",
    "jane.doe@acme.com", "acme", "Straße", "strasse", "über",
]  # fmt: skip
SEPARATORS = [" ", ", ", "-", "。", "\n", "的", ":"]
T0 = datetime(2024, 1, 1, tzinfo=UTC)
# Record ids are spread so that PostgreSQL's rows of 32 records (store/search_pg.py) hold
# several records each and a search reads several of them, in batches of one row.
SPREAD = 11
MANY, FEW = search_index.NARROW, search_index.SCAN  # before any test changes them


@pytest.fixture(autouse=True)
def _one_row_a_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_pg, "FIRST_BATCH", 1)


@pytest.fixture(scope="module")
def engines(pg_admin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Engine]]:
    path = tmp_path_factory.mktemp("search") / "search.db"
    lite = database.open_database(f"sqlite:///{path}")
    with scratch_database(pg_admin) as url:
        pg = database.open_database(url)
        yield [lite, pg]
        pg.dispose()
    lite.dispose()


text_of_words = st.lists(
    st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPARATORS)), max_size=8
).map(lambda pairs: "".join(w + s for w, s in pairs))
record_text = st.one_of(text_of_words, text_of_words, st.text(max_size=40))


def _query_words(word: str) -> st.SearchStrategy[str]:
    return st.sampled_from([word, word[:3] + "*", f"-{word}", word.upper()])


queries = st.one_of(
    st.lists(st.sampled_from(WORDS).flatmap(_query_words), min_size=1, max_size=3).map(" ".join),
    st.tuples(st.sampled_from(WORDS), st.sampled_from(WORDS)).map(lambda p: f'"{p[0]} {p[1]}"'),
    st.text(max_size=12),
)


def _has(found: list[str], term: Term) -> bool:
    n = len(term.tokens)
    for i in range(len(found) - n + 1):
        window = found[i : i + n]
        if window[:-1] == list(term.tokens[:-1]) and (
            window[-1].startswith(term.tokens[-1]) if term.prefix else window[-1] == term.tokens[-1]
        ):
            return True
    return False


def _expected(stored: dict[int, tuple[str, str]], query: Query) -> set[int]:
    out = set()
    for rid, (subject, body) in stored.items():
        found = tokens(subject) + tokens(body)
        if all(_has(found, t) for t in query.include) and not any(
            _has(found, t) for t in query.exclude
        ):
            out.add(rid)
    return out


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(record_text, record_text), min_size=1, max_size=12),
    st.lists(queries, min_size=1, max_size=6),
)
def test_both_engines_find_the_same_records(
    engines: list[Engine], texts: list[tuple[str, str]], asked: list[str]
) -> None:
    stored = {(i + 1) * SPREAD: pair for i, pair in enumerate(texts)}
    for engine in engines:
        with engine.begin() as conn:
            conn.execute(delete(records))
            conn.execute(
                insert(records),
                [
                    {
                        "id": rid, "key": f"note:{rid}", "kind": "note", "direction": "outbound",
                        "subject": subject.replace("\x00", ""), "body": body.replace("\x00", ""),
                        "occurred_at": T0 + timedelta(days=rid), "created_at": T0,
                    }
                    for rid, (subject, body) in stored.items()
                ],
            )  # fmt: skip
            search_index.reindex_records(conn, list(stored))
    clean = {rid: (s.replace("\x00", ""), b.replace("\x00", "")) for rid, (s, b) in stored.items()}
    for text in asked:
        try:
            query = parse_query(text)
        except QueryError:
            continue
        results = []
        for engine in engines:
            with engine.connect() as conn:
                every = search_index.matching_ids(conn, query)
                ranked = search_index.search(conn, query, limit=100)
            assert {rid for rid, _ in ranked} == every
            results.append(every)
        assert results[0] == results[1] == _expected(clean, query), text


def _load(engine: Engine, stored: dict[int, tuple[str, str]], customer: dict[int, int]) -> None:
    with engine.begin() as conn:
        conn.execute(delete(records))
        if conn.scalar(select(func.count()).select_from(customers)) == 0:
            conn.execute(
                insert(customers), [{"id": c, "name": f"C{c}", "created_at": T0} for c in (1, 2)]
            )
        conn.execute(
            insert(records),
            [
                {
                    "id": rid, "key": f"note:{rid}", "kind": "note", "direction": "outbound",
                    "subject": subject, "body": body,
                    "occurred_at": T0 + timedelta(days=rid), "created_at": T0,
                }
                for rid, (subject, body) in stored.items()
            ],
        )  # fmt: skip
        conn.execute(
            insert(record_customers),
            [{"record_id": r, "customer_id": c, "link": "domain"} for r, c in customer.items()],
        )
        search_index.reindex_records(conn, list(stored))


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(text_of_words, text_of_words, st.sampled_from([1, 2])), min_size=1,
             max_size=12),
    st.lists(queries, min_size=1, max_size=6),
)  # fmt: skip
def test_a_customers_records_are_found_alike_by_either_way(
    engines: list[Engine],
    monkeypatch: pytest.MonkeyPatch,
    texts: list[tuple[str, str, int]],
    asked: list[str],
) -> None:
    """With --customer, SQLite matches a few records' stored tokens (or, with many, probes
    the index), PostgreSQL reads the customer's records' rows (or, with many, filters the
    index's rows): every way finds what the tokens say."""
    stored = {(i + 1) * SPREAD: (s, b) for i, (s, b, _) in enumerate(texts)}
    customer = {(i + 1) * SPREAD: c for i, (_, _, c) in enumerate(texts)}
    for engine in engines:
        _load(engine, stored, customer)
    mine = {rid: pair for rid, pair in stored.items() if customer[rid] == 1}
    filters = search_index.Filters(customer_id=1)
    for text in asked:
        try:
            query = parse_query(text)
        except QueryError:
            continue
        expected = _expected(mine, query)
        # SQLite: the few records' stored tokens, or the index; PostgreSQL: the customer's
        # records' rows, or the rows the index gives, filtered in SQL.
        lite, pg = engines
        for engine, scan, narrow in [
            (lite, FEW, MANY),
            (lite, 0, MANY),
            (pg, 0, MANY),
            (pg, 0, 0),
        ]:
            monkeypatch.setattr(search_index, "SCAN", scan)
            monkeypatch.setattr(search_index, "NARROW", narrow)
            with engine.connect() as conn:
                assert search_index.matching_ids(conn, query, filters) == expected, text
                ranked = search_index.search(conn, query, filters, limit=100)
            assert {rid for rid, _ in ranked} == expected, (text, scan)
            assert all(score > 0 for _, score in ranked), (text, ranked)


def test_two_transactions_reindexing_one_record_both_commit(engines: list[Engine]) -> None:
    """Two daemons on PostgreSQL re-index one meeting (each rep's calendar shows it) at once:
    the second waits for the first and then overwrites, instead of failing its batch."""
    pg = engines[1]
    with pg.begin() as conn:
        conn.execute(delete(records))
        conn.execute(
            insert(records),
            [{"id": 1, "key": "meeting:x", "kind": "meeting", "direction": "outbound",
              "subject": "Renewal demo", "occurred_at": T0, "created_at": T0}],
        )  # fmt: skip
    errors: list[BaseException] = []
    first = pg.connect()
    first.begin()
    search_index.reindex_records(first, [1])

    def second() -> None:
        try:
            with pg.begin() as conn:
                search_index.reindex_records(conn, [1])
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(1.0)  # it waits on the first transaction's row
    first.commit()
    first.close()
    thread.join(30)
    assert not thread.is_alive() and errors == []
    with pg.connect() as conn:
        assert search_index.matching_ids(conn, parse_query("renewal demo")) == {1}
