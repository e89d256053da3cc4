"""Events: the envelope of ``events list --json`` (also a webhook's body) and the table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncd.cli.output import View
from syncd.cli.present.dates import minute
from syncd.store.events import StoredEvent, envelope

if TYPE_CHECKING:
    from rich.console import Console


def summary(event: StoredEvent) -> str:
    """A few words on what happened, for people."""
    data: dict[str, Any] = event.data
    if event.type == "contact.forgotten":
        return "a person was forgotten"
    if event.type == "record.deleted":
        return f"{data.get('kind', 'record')} deleted"
    if event.type.startswith("task."):
        return f"[{data.get('status')}] {data.get('title', '')}"[:80]
    state = f"[{data['status']}] " if data.get("kind") == "meeting" else ""
    return f"{data.get('kind', '')} {state}{data.get('subject') or '(no subject)'}"[:80]


def line(event: StoredEvent) -> str:
    """One event on one line: how ``--follow`` shows it to people."""
    return (
        f"{event.id}  {minute(event.created_at)}  {event.type:17} {event.subject}  {summary(event)}"
    )


def _show(out: Console, rows: list[StoredEvent]) -> None:
    from rich.table import Table

    table = Table("id", "created", "type", "subject", "summary")
    for event in rows:
        table.add_row(
            str(event.id), minute(event.created_at), event.type, event.subject, summary(event)
        )
    out.print(table)


EVENTS: View[StoredEvent] = View(as_json=envelope, show=_show)
