"""Customers: the JSON object of ``customers list`` and the table for people."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncd.cli.output import View
from syncd.cli.present.dates import iso

if TYPE_CHECKING:
    from rich.console import Console

TIMES = ("last_contact_at", "last_inbound_at", "last_outbound_at", "next_meeting_at")
COUNTS = ("open_tasks", "emails", "meetings", "calls", "visits")


def customer_json(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": row["id"], "name": row["name"], "domains": list(row["domains"])}
    out["archived_at"] = iso(row.get("archived_at"))
    out.update((key, iso(row.get(key))) for key in TIMES)
    out.update((key, int(row.get(key) or 0)) for key in COUNTS)
    return out


def _day(value: Any) -> str:
    text = iso(value)
    return text[:10] if text else "-"


def _show(out: Console, rows: list[dict[str, Any]]) -> None:
    from rich import box
    from rich.table import Table

    # Eleven columns (visits only in the JSON): light rules, so that dates stay whole in 100
    # columns.
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", no_wrap=True)
    table.add_column("name", min_width=8)
    for header in ("last contact", "last in", "last out", "next meeting"):
        table.add_column(header, min_width=max(10, len(header)))
    for header in ("tasks", "emails", "meetings", "calls"):
        table.add_column(header, no_wrap=True, justify="right")
    table.add_column("domains", overflow="fold")
    archived = any(row.get("archived_at") for row in rows)
    if archived:
        table.add_column("archived", no_wrap=True)
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["name"]),
            *(_day(row.get(key)) for key in TIMES),
            *(str(int(row.get(key) or 0)) for key in COUNTS[:4]),
            ", ".join(row["domains"]),
            *([_day(row.get("archived_at"))] if archived else []),
        )
    out.print(table)


CUSTOMERS: View[dict[str, Any]] = View(as_json=customer_json, show=_show)
