"""``syncd status``: the JSON document and the view for people."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from syncd.cli.present.dates import iso_any

if TYPE_CHECKING:
    from syncd.cli.plain import Screen, Table
    from syncd.config import Config
    from syncd.store.status_read import DaemonInfo, Reader


def read(config: Config, reader: Reader, now: datetime) -> dict[str, Any]:
    """The ``status --json`` document, read through ``reader``: ``syncd status`` and the
    API's ``GET /status`` both print this."""
    from syncd.store import status_read

    doc = document(
        status_read.sync_status(reader, [b.name for b in config.mailbox]),
        status_read.calendar_status(reader, [c.name for c in config.calendar]),
        status_read.live_daemons(reader),
        status_read.health_rows(reader),
        now,
        status_read.directory_status(reader) if config.directory is not None else None,
    )
    if config.mailbox_group:
        add_groups(doc, {b.name: getattr(b, "group", None) for b in config.mailbox})
    if config.webhook:
        from syncd.cli.present import webhooks

        rows = status_read.webhook_status(
            reader, [w.name for w in config.webhook], webhooks.filters(config.webhook)
        )
        doc["webhooks"] = webhooks.items(config.webhook, rows, now)
    if config.crm:
        from syncd.store.crm_queue import status_rows

        doc["crms"] = status_rows(reader, [c.name for c in config.crm])
    if config.api is not None:
        scheme = "https" if config.api.tls_cert else "http"
        doc["api"] = {
            "listen": config.api.listen,
            "tls": config.api.tls_cert is not None,
            "docs": f"{scheme}://{config.api.listen}/api/docs",
        }
    return doc


def document(
    mailboxes: list[dict[str, Any]],
    calendars: list[dict[str, Any]],
    daemons: list[DaemonInfo],
    activity: dict[tuple[str, str], dict[str, Any]],
    now: datetime,
    directory: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What ``status --json`` prints: the daemon, then every source with its activity."""
    live = {d.id for d in daemons}
    held: dict[str, int] = dict.fromkeys(live, 0)
    for kind, items in (("mailbox", mailboxes), ("calendar", calendars)):
        for item in items:
            _dates(item)
            row = activity.get((kind, item[kind]))
            _merge_activity(item, row, running=bool(daemons))
            # Which live daemon holds its lease (None: nobody, or a daemon that died).
            holder = row["daemon_id"] if row is not None else None
            item["held_by"] = holder if holder in live else None
            if holder in live:
                held[str(holder)] += 1
    total = len(mailboxes) + len(calendars)
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
    fleet = [
        {
            "id": d.id,
            "host": d.host,
            "pid": d.pid,
            "heartbeat_age_seconds": round((now - d.heartbeat_at).total_seconds(), 1),
            "sources_held": held[d.id],
            "share": round(held[d.id] / total, 3) if total else 0.0,
        }
        for d in daemons
    ]
    doc: dict[str, Any] = {"daemon": daemon, "daemons": fleet, "sources": mailboxes + calendars}
    if directory is not None:  # [directory] is configured
        _dates(directory)
        doc["directory"] = directory
    return doc


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


_WORST = ("never synced", "ok", "degraded", "failing")


def add_groups(doc: dict[str, Any], group_of: dict[str, str | None]) -> None:
    """Per [[mailbox_group]]: its mailboxes' worst state and what most of them need.

    A group's credential failing (a revoked client secret) fails every mailbox of the group
    with the same reason; the group's line says it once."""
    groups: dict[str, dict[str, Any]] = {}
    reasons: dict[str, dict[str, int]] = {}
    for item in doc["sources"]:
        group = group_of.get(item.get("mailbox", ""))
        if group is None:
            continue
        item["group"] = group
        entry = groups.setdefault(
            group, {"group": group, "state": "never synced", "mailboxes": 0, "failing": 0}
        )
        entry["mailboxes"] += 1
        if _WORST.index(item["state"]) > _WORST.index(entry["state"]):
            entry["state"] = item["state"]
        if item["state"] == "failing":
            entry["failing"] += 1
            why = item.get("shown") or item["last_error"] or ""
            counts = reasons.setdefault(group, {})
            counts[why] = counts.get(why, 0) + 1
    for name, entry in groups.items():
        counts = reasons.get(name, {})
        entry["reason"] = max(counts, key=lambda r: counts[r]) if counts else None
    doc["groups"] = sorted(groups.values(), key=lambda g: g["group"])


def exit_code(doc: dict[str, Any]) -> int:
    """For monitoring scripts: 0 all ok, 1 degraded, 2 failing, 3 daemon not running."""
    if doc["daemon"] is None:
        return 3
    states = {source["state"] for source in doc["sources"]}
    if "failing" in states:
        return 2
    # A refused directory file changes nothing: capture goes on with the last one applied.
    # A disabled webhook endpoint (410 Gone) receives nothing until someone acts.
    if (
        "degraded" in states
        or (doc.get("directory") or {}).get("state") == "error"
        or any(w["state"] != "active" for w in doc.get("webhooks", []))
        or any(c["state"] != "ok" for c in doc.get("crms", []))
    ):
        return 1
    return 0


def show(out: Screen, doc: dict[str, Any]) -> None:
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
    if len(doc["daemons"]) > 1:
        for d in doc["daemons"]:
            out.print(
                f"  daemon {d['id'][:8]} (pid {d['pid']} on {d['host']}): "
                f"{d['sources_held']} sources held ({d['share']:.0%})",
                markup=False,
            )
    holders = len(doc["daemons"]) > 1  # show who holds what when there is a choice
    out.print(_table(rows, ("mailbox", "folder"), "folders", "messages_captured", holders))
    for group in doc.get("groups", []):
        line = f"mailbox group {group['group']}: {group['mailboxes']} mailboxes, {group['state']}"
        if group["failing"]:
            line += f"; {group['failing']} failing: {group['reason']}"
        out.print(line, markup=False)
    for kind, item in [("mailbox", r) for r in rows] + [("calendar", c) for c in calendars]:
        if item.get("shown") and item["shown"] != "syncing":
            out.print(f"{kind} {item[kind]}: {item['shown']}", markup=False)
    for box in rows:
        for held in box["quarantined"]:
            out.print(
                f"quarantined: {box['mailbox']}/{held['folder']} uid {held['uid']}: {held['reason']}",
                markup=False,
            )
    if doc.get("directory") is not None:
        out.print(_directory_line(doc["directory"]), markup=False)
    for hook in doc.get("webhooks", []):
        out.print(
            f"webhook {hook['name']}: {hook['state']}, {hook['pending']} pending, "
            f"{hook['failed']} failed, last success {hook['last_success_at'] or '-'}"
            + (f", last error: {hook['last_error']}" if hook["last_error"] else "")
            + (f" ({hook['reason']})" if hook["reason"] else ""),
            markup=False,
        )
    for crm in doc.get("crms", []):
        out.print(
            f"crm {crm['name']}: {crm['state']}, {crm['pending']} pending, "
            f"{crm['failed']} refused, {crm['pushed']} pushed, {crm['pulled']} pulled, "
            f"last success {crm['last_success_at'] or '-'}"
            + (f", last error: {crm['last_error']}" if crm["last_error"] else ""),
            markup=False,
        )
    if doc.get("api") is not None:
        api = doc["api"]
        out.print(
            f"api: {api['listen']} ({'TLS' if api['tls'] else 'plain HTTP'}), docs {api['docs']}",
            markup=False,
        )
    if calendars:
        out.print(
            _table(calendars, ("calendar", "collection"), "calendars", "meetings_captured", holders)
        )
        for cal in calendars:
            for held in cal["quarantined"]:
                out.print(
                    f"quarantined: {cal['calendar']} {held['href']}: {held['reason']}",
                    markup=False,
                )


def _table(
    sources: list[dict[str, Any]],
    columns: tuple[str, str],
    children: str,
    count: str,
    holders: bool = False,
) -> Table:
    """One row per source (mailbox or calendar account), then one per folder or calendar.

    ``columns`` names the source's key and its children's key, which are also the headers;
    ``holders`` adds the daemon holding each source (several daemons share the database).
    """
    from syncd.cli.plain import Table

    source_key, child_key = columns
    headers = [source_key, child_key, "state", "last success", "captured", "last error"]
    table = Table(*headers, *(["daemon"] if holders else []))
    for source in sources:
        holder = [(source["held_by"] or "-")[:8]] if holders else []
        table.add_row(
            source[source_key], "", source.get("shown") or source["state"],
            source["last_success_at"] or "-",
            str(source[count]), source["last_error"] or "", *holder,
        )  # fmt: skip
        for child in source[children]:
            table.add_row(
                "", child[child_key], "error" if child["last_error"] else "ok",
                child["last_success_at"] or "-", str(child[count]), child["last_error"] or "",
                *([""] if holders else []),
            )  # fmt: skip
    return table


def _directory_line(directory: dict[str, Any]) -> str:
    applied = f"last applied {directory['last_applied_at'] or 'never'}"
    if directory["counts"]:
        applied += (
            " ("
            + "; ".join(
                f"{kind}: " + ", ".join(f"{n} {what}" for what, n in counts.items() if n)
                for kind, counts in directory["counts"].items()
            )
            + ")"
        )
    if directory["state"] == "error":
        return (
            f"directory: ERROR since {directory['last_error_at']}: {directory['last_error']}\n"
            f"  nothing changed; the directory in use is the one {applied}"
        )
    return f"directory: {directory['state']}, {applied}"
