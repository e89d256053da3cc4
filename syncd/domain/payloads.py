"""The JSON objects syncd shows for a record and a task: one definition for every reader.

``syncd records list --json`` and ``syncd tasks list --json`` print them, and every event
in the outbox carries one as its ``data``, so a consumer of the feed or of a webhook needs
one parser.  Pure: the rows come from ``store/queries.py`` and ``store/tasks.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson


def iso(value: datetime | None) -> str | None:
    """ISO 8601 to the second, UTC as ``Z``: the format of every time in the JSON output."""
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value else None


_MEETING_KEYS = frozenset(
    {"status", "starts_at", "ends_at", "ical_uid", "recurrence_id", "organizer"}
)


def record_json(row: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """A stored record as README documents it: times in ISO 8601 UTC and, for a meeting,
    the status people see at ``now`` (``scheduled`` until it ends, then ``held``)."""
    if row["kind"] != "meeting":  # no meeting keys to leave out: the outbox's common case
        out = dict(row)
        out["occurred_at"] = iso(row["occurred_at"])
        return out
    # Imported here: the CLI's start-up does not pay for the calendar readers.
    from syncd.domain.occurrences import shown_status

    out = {key: value for key, value in row.items() if key not in _MEETING_KEYS}
    out["occurred_at"] = iso(row["occurred_at"])
    out["status"] = shown_status(
        row["status"] or "scheduled", row["ends_at"], now or datetime.now(UTC)
    )
    out["starts_at"] = iso(row["starts_at"])
    out["ends_at"] = iso(row["ends_at"])
    out["ical_uid"] = row["ical_uid"]
    out["recurrence_id"] = row["recurrence_id"] or None
    out["organizer"] = row["organizer"]
    return out


# With these options orjson writes a datetime as ``iso`` does (to the second, UTC as ``Z``):
# a page of records is encoded with no Python call per time.
ISO_TIMES = orjson.OPT_UTC_Z | orjson.OPT_OMIT_MICROSECONDS


def record_fields(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """``record_json`` with its times left as datetimes, for ``orjson.dumps(...,
    option=ISO_TIMES)``: the same document.  A row of any kind but a meeting is the
    object already, and is given back as it is (not copied)."""
    if row["kind"] != "meeting":
        return row
    from syncd.domain.occurrences import shown_status

    out = {key: value for key, value in row.items() if key not in _MEETING_KEYS}
    out["status"] = shown_status(row["status"] or "scheduled", row["ends_at"], now)
    out["starts_at"] = row["starts_at"]
    out["ends_at"] = row["ends_at"]
    out["ical_uid"] = row["ical_uid"]
    out["recurrence_id"] = row["recurrence_id"] or None
    out["organizer"] = row["organizer"]
    return out


def task_json(row: dict[str, Any]) -> dict[str, Any]:
    # Tasks keep the seconds and the offset of isoformat(): the README's documented shape.
    return {
        "id": row["id"],
        "title": row["title"],
        "owner": row["owner"],
        "customer": row["customer"],
        "due_at": row["due_at"].isoformat(),
        "status": row["status"],
        "rule": row["rule"],
        "record_id": row["record_id"],
        "closed_by_record_id": row["closed_by_record_id"],
        "snoozed_until": row["snoozed_until"].isoformat() if row["snoozed_until"] else None,
        "type": row.get("type") or "todo",
        "priority": row.get("priority") or "normal",
    }
