"""API tokens: the JSON object of ``tokens list`` and the table for people (never a secret)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncd.cli.output import View
from syncd.cli.present.dates import iso, minute

if TYPE_CHECKING:
    from rich.console import Console


def token_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": row["name"],
        "scope": row["scope"],
        "rep": row["rep"],
        "expires_at": iso(row["expires_at"]),
        "created_at": iso(row["created_at"]),
        "revoked_at": iso(row["revoked_at"]),
        "last_used_at": iso(row["last_used_at"]),
    }


def _show(out: Console, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table("name", "scope", "rep", "expires", "last used", "state")
    for row in rows:
        table.add_row(
            row["name"], row["scope"], row["rep"] or "-",
            minute(row["expires_at"]) if row["expires_at"] else "never",
            minute(row["last_used_at"]) if row["last_used_at"] else "-",
            "revoked" if row["revoked_at"] else "live",
        )  # fmt: skip
    out.print(table)


TOKENS: View[dict[str, Any]] = View(as_json=token_json, show=_show)
