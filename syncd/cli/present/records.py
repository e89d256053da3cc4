"""Records: the JSON object of ``records list`` and the views for people."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncd.cli.output import View
from syncd.cli.present.dates import minute

# One definition of the record's JSON, shared with the outbox's events.
from syncd.domain.payloads import record_json as record_json

if TYPE_CHECKING:
    from rich.console import Console


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


def logged_arrow(row: dict[str, Any]) -> str:
    """A call's or visit's direction as the timeline draws mail's; a note has none."""
    return {"inbound": "<-", "outbound": "->"}.get(row["direction"], "  ")


def logged_detail(row: dict[str, Any]) -> str:
    """What a timeline adds after a call's, visit's or note's people:
    `` (15 min, voicemail; by alice@example.com)``."""
    facts = []
    if row.get("duration_seconds"):
        minutes, seconds = divmod(int(row["duration_seconds"]), 60)
        facts.append(f"{minutes} min" if not seconds else f"{minutes} min {seconds} s")
    facts += [str(row[key]) for key in ("outcome", "location") if row.get(key)]
    by = f"by {row['owner']}" if row.get("owner") else ""
    inside = "; ".join(part for part in (", ".join(facts), by) if part)
    return f" ({inside})" if inside else ""


RECORDS: View[dict[str, Any]] = View(as_json=record_json, show=_show)
