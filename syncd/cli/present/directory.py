"""Customers: the JSON object of ``customers list`` and the table for people."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncd.cli.output import View

if TYPE_CHECKING:
    from rich.console import Console


def customer_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "domains": list(row["domains"])}


def _show(out: Console, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table("id", "name", "domains")
    for row in rows:
        table.add_row(str(row["id"]), str(row["name"]), ", ".join(row["domains"]))
    out.print(table)


CUSTOMERS: View[dict[str, Any]] = View(as_json=customer_json, show=_show)
