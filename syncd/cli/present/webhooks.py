"""``syncd webhooks list`` and the webhook lines of ``syncd status``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from syncd.cli.present.dates import iso
from syncd.domain.urls import shown_url

if TYPE_CHECKING:
    from rich.console import Console

    from syncd.config import WebhookConfig
    from syncd.store.status_read import EndpointFilter


def filters(configs: Sequence[WebhookConfig]) -> dict[str, EndpointFilter]:
    """Each endpoint's outbox filters, so that its backlog counts only what it will take."""
    from syncd.store.status_read import EndpointFilter

    return {
        c.name: EndpointFilter(
            tuple(c.events) if c.events else None,
            datetime.combine(c.since, datetime.min.time(), UTC) if c.since else None,
        )
        for c in configs
    }


def state(row: dict[str, Any]) -> str:
    """``disabled`` (a 410: it receives nothing until someone acts), ``failing`` (its last
    attempt failed and deliveries wait or were given up), else ``active``."""
    stored = str(row.get("state", "active"))
    if stored != "active":
        return stored
    error_at, success_at = row.get("last_error_at"), row.get("last_success_at")
    backlog = row.get("pending", 0) + row.get("failed", 0)
    if backlog and error_at is not None and (success_at is None or error_at > success_at):
        return "failing"
    return stored


def items(
    configs: Sequence[WebhookConfig], rows: dict[str, dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """One JSON object per configured endpoint (never its secret)."""
    out = []
    for config in configs:
        row = rows.get(config.name) or {}
        oldest = row.get("oldest_at")
        out.append(
            {
                "name": config.name,
                "url": shown_url(config.url),
                "events": config.events,
                "state": state(row),
                "reason": row.get("reason"),
                "pending": row.get("pending", 0) + row.get("not_taken", 0),
                "oldest_undelivered_at": iso(oldest),
                "oldest_age_seconds": round((now - oldest).total_seconds(), 1) if oldest else None,
                "failed": row.get("failed", 0),
                "delivered": row.get("delivered", 0),
                "last_success_at": iso(row.get("last_success_at")),
                "last_error": row.get("last_error"),
                "last_error_at": iso(row.get("last_error_at")),
            }
        )
    return out


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def show(out: Console, endpoints: list[dict[str, Any]]) -> None:
    from rich.table import Table

    if not endpoints:
        out.print("no [[webhook]] configured")
        return
    table = Table(
        "webhook", "url", "state", "pending", "oldest", "failed", "last success", "last error"
    )
    for item in endpoints:
        table.add_row(
            item["name"], item["url"], item["state"], str(item["pending"]),
            _age(item["oldest_age_seconds"]), str(item["failed"]),
            item["last_success_at"] or "-", item["last_error"] or "",
        )  # fmt: skip
    out.print(table)
    for item in endpoints:
        if item["state"] == "disabled":
            out.print(f"webhook {item['name']}: disabled: {item['reason']}", markup=False)
