"""How the customer list is ordered and filtered: pure, on the rows the store computed."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

SORTS = ("name", "last-contact", "emails", "meetings", "calls", "visits", "open-tasks")
_COUNT_KEYS = {
    "emails": "emails",
    "meetings": "meetings",
    "calls": "calls",
    "visits": "visits",
    "open-tasks": "open_tasks",
}


def arrange(
    rows: Iterable[dict[str, Any]], *, sort_by: str = "name", quiet_since: datetime | None = None
) -> list[dict[str, Any]]:
    """``rows`` (in name order) filtered to those with no contact since ``quiet_since`` (never
    contacted ones included) and sorted: ``last-contact`` puts the longest silent first
    (never contacted before all), the counts put the most first; ties keep name order."""
    kept = [
        row
        for row in rows
        if quiet_since is None
        or row["last_contact_at"] is None
        or row["last_contact_at"] < quiet_since
    ]
    if sort_by == "name":
        return kept
    if sort_by == "last-contact":
        return sorted(
            kept, key=lambda r: (r["last_contact_at"] is not None, r["last_contact_at"] or 0)
        )
    if sort_by in _COUNT_KEYS:
        key = _COUNT_KEYS[sort_by]
        return sorted(kept, key=lambda r: -int(r[key]))
    raise ValueError(f"unknown sort {sort_by!r}: one of {', '.join(SORTS)}")
