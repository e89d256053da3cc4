"""``syncd status``: the JSON document and the view for people."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from syncd.cli.present.dates import iso_any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from syncd.store.status_read import DaemonInfo


def document(
    mailboxes: list[dict[str, Any]],
    calendars: list[dict[str, Any]],
    daemons: list[DaemonInfo],
    activity: dict[tuple[str, str], dict[str, Any]],
    now: datetime,
) -> dict[str, Any]:
    """What ``status --json`` prints: the daemon, then every source with its activity."""
    for kind, items in (("mailbox", mailboxes), ("calendar", calendars)):
        for item in items:
            _dates(item)
            _merge_activity(item, activity.get((kind, item[kind])), running=bool(daemons))
    daemon = (
        {
            "id": daemons[0].id,
            "host": daemons[0].host,
            "pid": daemons[0].pid,
            "started_at": daemons[0].started_at.isoformat(),
            "heartbeat_at": daemons[0].heartbeat_at.isoformat(),
            "heartbeat_age_seconds": round((now - daemons[0].heartbeat_at).total_seconds(), 1),
            "summary": daemons[0].summary,
            "others": len(daemons) - 1,
        }
        if daemons
        else None
    )
    return {"daemon": daemon, "sources": mailboxes + calendars}


def _dates(item: dict[str, Any]) -> None:
    """Times in the JSON format, however deep (folders, calendars, quarantined items)."""
    for key, value in item.items():
        if isinstance(value, list):
            for child in value:
                if isinstance(child, dict):
                    _dates(child)
        else:
            item[key] = iso_any(value)


def _merge_activity(item: dict[str, Any], row: dict[str, Any] | None, *, running: bool) -> None:
    """What the daemon is doing with a source, shown beside what the last sync left."""
    item["activity"] = None
    if row is None or not running:
        return
    retry_at = row["retry_at"].isoformat() if row["retry_at"] else None
    item["activity"] = {"state": row["state"], "reason": row["reason"], "retry_at": retry_at}
    if row["state"] == "attention":
        item["state"] = "failing"
        item["shown"] = f"needs attention: {row['reason']}"
    elif row["state"] == "backoff":
        if item["state"] == "ok":
            item["state"] = "degraded"
        item["shown"] = f"backing off until {retry_at}"
    elif row["state"] == "syncing":
        item["shown"] = "syncing"


def exit_code(doc: dict[str, Any]) -> int:
    """For monitoring scripts: 0 all ok, 1 degraded, 2 failing, 3 daemon not running."""
    if doc["daemon"] is None:
        return 3
    states = {source["state"] for source in doc["sources"]}
    if "failing" in states:
        return 2
    if "degraded" in states:
        return 1
    return 0


def show(out: Console, doc: dict[str, Any]) -> None:
    daemon = doc["daemon"]
    rows = [s for s in doc["sources"] if "mailbox" in s]
    calendars = [s for s in doc["sources"] if "calendar" in s]
    if daemon is None:
        out.print("daemon: NOT RUNNING (start it: systemctl start syncd, or syncd run)")
    else:
        out.print(
            f"daemon: running, pid {daemon['pid']} on {daemon['host']}, heartbeat "
            f"{daemon['heartbeat_age_seconds']:.0f}s ago: {daemon['summary']}"
            + (f" (+{daemon['others']} more daemons)" if daemon["others"] else ""),
            markup=False,
        )
    out.print(_table(rows, ("mailbox", "folder"), "folders", "messages_captured"))
    for kind, item in [("mailbox", r) for r in rows] + [("calendar", c) for c in calendars]:
        if item.get("shown") and item["shown"] != "syncing":
            out.print(f"{kind} {item[kind]}: {item['shown']}", markup=False)
    for box in rows:
        for held in box["quarantined"]:
            out.print(
                f"quarantined: {box['mailbox']}/{held['folder']} uid {held['uid']}: {held['reason']}",
                markup=False,
            )
    if calendars:
        out.print(_table(calendars, ("calendar", "collection"), "calendars", "meetings_captured"))
        for cal in calendars:
            for held in cal["quarantined"]:
                out.print(
                    f"quarantined: {cal['calendar']} {held['href']}: {held['reason']}",
                    markup=False,
                )


def _table(
    sources: list[dict[str, Any]], columns: tuple[str, str], children: str, count: str
) -> Table:
    """One row per source (mailbox or calendar account), then one per folder or calendar.

    ``columns`` names the source's key and its children's key, which are also the headers.
    """
    from rich.table import Table

    source_key, child_key = columns
    table = Table(source_key, child_key, "state", "last success", "captured", "last error")
    for source in sources:
        table.add_row(
            source[source_key], "", source.get("shown") or source["state"],
            source["last_success_at"] or "-",
            str(source[count]), source["last_error"] or "",
        )  # fmt: skip
        for child in source[children]:
            table.add_row(
                "", child[child_key], "error" if child["last_error"] else "ok",
                child["last_success_at"] or "-", str(child[count]), child["last_error"] or "",
            )  # fmt: skip
    return table
