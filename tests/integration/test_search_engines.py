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
from sqlalchemy import Engine, delete, insert

from syncd.domain.search_text import Query, QueryError, Term, parse_query, tokens
from syncd.schema.tables import records
from syncd.store import database, search_index
from tests.servers.postgres import scratch_database

pytestmark = pytest.mark.postgres

WORDS = [
    "price", "list", "Café", "cafe", "CAFÉS", "quote", "quotation", "naïve", "x1",
    "报价", "关于报价的问题", "东京", "東京タワー", "タワー", "한국어", "국어", "价",
    "jane.doe@acme.com", "acme", "Straße", "strasse", "über",
]  # fmt: skip
SEPARATORS = [" ", ", ", "-", "。", "\n", "的", ":"]
T0 = datetime(2024, 1, 1, tzinfo=UTC)


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
    stored = {i + 1: pair for i, pair in enumerate(texts)}
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
