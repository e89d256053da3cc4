"""The API encodes a page of records with orjson writing the times itself (``record_fields``
with ``ISO_TIMES``): the bytes must be those of ``record_json``, which every other reader
(the CLI, the outbox, webhooks) uses, for every time and every kind of record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from syncd.domain.payloads import ISO_TIMES, record_fields, record_json

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
KINDS = ("email", "meeting", "call", "visit", "note")

times = st.datetimes(
    min_value=datetime(1000, 1, 1),
    max_value=datetime(9999, 12, 31),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=2))]),
)


def _row(kind: str, occurred: datetime, starts: datetime, ends: datetime) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": 7,
        "kind": kind,
        "direction": "inbound",
        "subject": "Quote",
        "snippet": None,
        "body": None,
        "occurred_at": occurred,
        "customers": [{"id": 1, "name": "Acme", "link": "domain"}],
        "participants": [],
        "thread_id": None,
        "message_id": None,
        "sources": [],
        "owner": None,
        "origin": None,
        "external_id": None,
        "duration_seconds": None,
        "outcome": None,
        "location": None,
    }
    if kind == "meeting":
        row.update(
            status="scheduled",
            starts_at=starts,
            ends_at=ends,
            ical_uid="u1",
            recurrence_id="",
            organizer="a@example.com",
        )
    return row


@given(kind=st.sampled_from(KINDS), occurred=times, starts=times, ends=times)
def test_orjson_writes_the_times_as_record_json_does(
    kind: str, occurred: datetime, starts: datetime, ends: datetime
) -> None:
    row = _row(kind, occurred, starts, ends)
    expected = orjson.dumps(record_json(dict(row), NOW))
    assert orjson.dumps(record_fields(dict(row), NOW), option=ISO_TIMES) == expected


def test_a_meeting_s_status_is_the_one_shown_now() -> None:
    ended = _row("meeting", NOW, NOW - timedelta(hours=2), NOW - timedelta(hours=1))
    later = _row("meeting", NOW, NOW + timedelta(hours=1), NOW + timedelta(hours=2))
    assert record_fields(ended, NOW)["status"] == "held"
    assert record_fields(later, NOW)["status"] == "scheduled"
    assert record_fields(later, NOW)["recurrence_id"] is None
