"""Tasks: the JSON object of ``tasks list`` and the table for people."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncd.cli.output import View
from syncd.cli.present.dates import minute

if TYPE_CHECKING:
    from rich.console import Console


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
    }


def _show(out: Console, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table("id", "due", "status", "owner", "customer", "title")
    for task in rows:
        table.add_row(
            str(task["id"]), minute(task["due_at"]), task["status"],
            task["owner"], task["customer"] or "-", task["title"],
        )  # fmt: skip
    out.print(table)


TASKS: View[dict[str, Any]] = View(as_json=task_json, show=_show)
