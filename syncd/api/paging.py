"""Opaque cursors for lists: the sort key of the last item given, so the next page starts
right after it whatever was added meanwhile (keyset paging, never an offset)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson

from syncd.api.problems import Problem

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


def encode(key: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


def decode(cursor: str, arity: int) -> list[Any]:
    """The key a cursor holds; 422 for anything this server did not hand out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = orjson.loads(raw)
    except (binascii.Error, ValueError):
        key = None
    if not isinstance(key, list) or len(key) != arity:
        raise Problem(
            422,
            "cursor: not a cursor from this API; pass next_cursor as it was given",
            kind="validation",
            extra={"errors": [{"field": "query.cursor", "message": "not a valid cursor"}]},
        )
    return key


def page_of(
    items: Sequence[T], key: Callable[[T], list[Any]], limit: int, cursor: str | None
) -> tuple[list[T], str | None]:
    """A page of ``items`` (sorted by ``key``) after ``cursor``, and the next cursor."""
    ordered = sorted(items, key=key)
    if cursor is not None:
        after = decode(cursor, len(key(ordered[0])) if ordered else 0) if ordered else None
        if after is not None:
            try:
                ordered = [item for item in ordered if key(item) > after]
            except TypeError:  # a key of other types than ours: not our cursor
                raise Problem(
                    422, "cursor: not a cursor from this API", kind="validation"
                ) from None
    page = ordered[:limit]
    more = len(ordered) > limit
    return page, encode(key(page[-1])) if more else None
