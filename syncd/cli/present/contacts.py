"""Contacts: the JSON object of ``contacts list`` and the table for people."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncd.cli.output import View
from syncd.cli.present.dates import iso

if TYPE_CHECKING:
    from rich.console import Console


def contact_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "customer_id": row["customer_id"],
        "customer": row["customer"],
        "addresses": list(row["addresses"]),
        "archived_at": iso(row["archived_at"]),
    }


def _show(out: Console, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table("id", "name", "customer", "addresses")
    for row in rows:
        table.add_row(
            str(row["id"]), row["name"] or "-", row["customer"] or "-", ", ".join(row["addresses"])
        )
    out.print(table)


CONTACTS: View[dict[str, Any]] = View(as_json=contact_json, show=_show)
