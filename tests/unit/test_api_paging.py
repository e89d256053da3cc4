"""Keyset cursors: paging through a list while items are added gives every item that was
there from the start exactly once, and never an item twice."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.api import paging
from syncd.api.problems import Problem

Item = tuple[int, str]  # (sort value, unique id)


def _key(item: Item) -> list[object]:
    return [item[0], item[1]]


@given(
    start=st.lists(st.tuples(st.integers(-50, 50), st.uuids().map(str)), unique_by=lambda i: i[1]),
    added=st.lists(st.tuples(st.integers(-50, 50), st.uuids().map(str)), unique_by=lambda i: i[1]),
    limit=st.integers(1, 7),
)
def test_pages_are_stable_while_items_are_added(
    start: list[Item], added: list[Item], limit: int
) -> None:
    items = list(start)
    seen: list[str] = []
    cursor = None
    pending = list(added)
    for _ in range(len(start) + len(added) + 2):
        page, cursor = paging.page_of(items, _key, limit, cursor)
        seen.extend(item[1] for item in page)
        if pending:  # one more item arrives between two pages, anywhere in the order
            items.append(pending.pop())
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert {item[1] for item in start} <= set(seen)


@pytest.mark.parametrize("cursor", ["", "!!!", "bm90IGpzb24", paging.encode([1, 2, 3])])
def test_a_cursor_not_from_this_api_is_a_422(cursor: str) -> None:
    with pytest.raises(Problem) as raised:
        paging.page_of([(1, "a"), (2, "b")], _key, 1, cursor or "x")
    assert raised.value.status == 422


@given(
    st.lists(
        st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=20), st.booleans()), max_size=4
    )
)
def test_cursors_round_trip(key: list[object]) -> None:
    assert paging.decode(paging.encode(key), len(key)) == key
