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


def logged_line(row: dict[str, Any]) -> str:
    """How a call, visit or note reads in a timeline: ``-> (15 min, voicemail) by alice@...``."""
    arrow = {"inbound": "<-", "outbound": "->"}.get(row["direction"], "::")
    facts = []
    if row.get("duration_seconds"):
        minutes, seconds = divmod(int(row["duration_seconds"]), 60)
        facts.append(f"{minutes} min" if not seconds else f"{minutes} min {seconds} s")
    facts += [row[key] for key in ("outcome", "location") if row.get(key)]
    detail = f" ({', '.join(facts)})" if facts else ""
    return f"{arrow}{detail} by {row['owner']}" if row.get("owner") else f"{arrow}{detail}"


RECORDS: View[dict[str, Any]] = View(as_json=record_json, show=_show)
