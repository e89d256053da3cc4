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


RECORDS: View[dict[str, Any]] = View(as_json=record_json, show=_show)
