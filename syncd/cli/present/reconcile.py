"""The reconciliation queue, the exclusion list and the audit log, for people and scripts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from syncd.cli.output import View
from syncd.cli.present.dates import iso

if TYPE_CHECKING:
    from rich.console import Console

    from syncd.store.reconcile import QueueEntry


def queue_json(entry: QueueEntry) -> dict[str, Any]:
    best = entry.suggestions[0] if entry.suggestions else None
    return {
        "address": entry.address,
        "name": entry.name,
        "count": entry.count,
        "first_seen": iso(entry.first_seen),
        "last_seen": iso(entry.last_seen),
        "mailboxes": entry.mailboxes,
        "suggestion": None
        if best is None
        else {
            "customer_id": best.customer_id,
            "customer": best.customer,
            "confidence": best.confidence,
            "reason": best.reason,
        },
        "candidates": entry.candidates,
    }


def suggestion_text(entry: QueueEntry) -> str:
    """``Acme (0.90: thread)``: the best suggestion, as the table and ``accept`` print it."""
    best = entry.suggestions[0]
    return f"{best.customer} ({best.confidence:.2f}: {best.reason})"


def _show_queue(out: Console, entries: list[QueueEntry]) -> None:
    from rich.table import Table

    table = Table("address", "name", "seen", "last seen", "mailboxes", "suggestion", "candidates")
    for e in entries:
        table.add_row(
            e.address,
            e.name,
            str(e.count),
            e.last_seen.date().isoformat(),
            ", ".join(e.mailboxes),
            suggestion_text(e) if e.suggestions else "-",
            # Every owner of an ambiguous domain, with the id `reconcile assign` accepts.
            ", ".join(f"{c['name']} (id {c['id']})" for c in e.candidates) or "-",
        )
    out.print(table)


QUEUE: View[QueueEntry] = View(as_json=queue_json, show=_show_queue)


def _show_ignore(out: Console, rows: list[dict[str, str]]) -> None:
    for row in rows:
        click.echo(f"{row['entry']}  ({row['source']})")


IGNORE: View[dict[str, str]] = View(as_json=dict, show=_show_ignore)


def audit_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "at": iso(row["at"]),
        "actor": row["actor"],
        "action": row["action"],
        "target": row["target"],
        "detail": row["detail"],
    }


def _show_audit(out: Console, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        detail = ", ".join(f"{k}={v}" for k, v in row["detail"].items())
        at = iso(row["at"])
        click.echo(f"{at}  {row['actor']:12} {row['action']:16} {row['target']}  {detail}")


AUDIT: View[dict[str, Any]] = View(as_json=audit_json, show=_show_audit)
