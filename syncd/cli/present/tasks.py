"""Tasks: the JSON object of ``tasks list`` and the table for people."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncd.cli.output import View
from syncd.cli.present.dates import minute

# One definition of the task's JSON, shared with the outbox's events.
from syncd.domain.payloads import task_json as task_json

if TYPE_CHECKING:
    from rich.console import Console


def _show(out: Console, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table("id", "due", "status", "type", "owner", "customer", "title")
    for task in rows:
        mark = "!" if task.get("priority") == "high" else ""
        table.add_row(
            str(task["id"]), minute(task["due_at"]), task["status"],
            f"{task.get('type') or 'todo'}{mark}", task["owner"], task["customer"] or "-",
            task["title"],
        )  # fmt: skip
    out.print(table)


TASKS: View[dict[str, Any]] = View(as_json=task_json, show=_show)
