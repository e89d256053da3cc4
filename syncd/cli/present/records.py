"""Records: the JSON object of ``records list`` and the views for people."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from syncd.cli.output import View
from syncd.cli.present.dates import iso, minute

if TYPE_CHECKING:
    from rich.console import Console


def record_json(row: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """A stored record as README documents it: times in ISO 8601 UTC and, for a meeting,
    the status people see now (``scheduled`` until it ends, then ``held``)."""
    out = {key: value for key, value in row.items() if key not in _MEETING_KEYS}
    out["occurred_at"] = iso(row["occurred_at"])
    if row["kind"] == "meeting":
        from syncd.domain.meetings import shown_status

        out["status"] = shown_status(
            row["status"] or "scheduled", row["ends_at"], now or datetime.now(UTC)
        )
        out["starts_at"] = iso(row["starts_at"])
        out["ends_at"] = iso(row["ends_at"])
        out["ical_uid"] = row["ical_uid"]
        out["recurrence_id"] = row["recurrence_id"] or None
        out["organizer"] = row["organizer"]
    return out


_MEETING_KEYS = frozenset(
    {"status", "starts_at", "ends_at", "ical_uid", "recurrence_id", "organizer"}
)


def _show(out: Console, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table("id", "when", "kind", "dir", "customers", "subject")
    for row in rows:
        table.add_row(
            str(row["id"]),
            minute(row["occurred_at"]),
            row["kind"],
            row["direction"][:3],
            ", ".join(c["name"] for c in row["customers"]) or "-",
            row["subject"],
        )
    out.print(table)


RECORDS: View[dict[str, Any]] = View(as_json=record_json, show=_show)
