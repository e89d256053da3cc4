"""Tasks as VTODOs (RFC 5545 3.6.2): what syncd writes, and what a calendar app did to them."""

from __future__ import annotations

from datetime import UTC, datetime

import icalendar

_STATUS = {
    "open": "NEEDS-ACTION",
    "snoozed": "NEEDS-ACTION",
    "done": "COMPLETED",
    "dismissed": "CANCELLED",
}


# RFC 5545 3.8.1.9: 1 is the highest priority, 5 medium, 9 the lowest.
_PRIORITY = {"high": 1, "normal": 5, "low": 9}


def todo_uid(task_id: int) -> str:
    return f"syncd-task-{task_id}@syncd"


def render_todo(
    *,
    task_id: int,
    title: str,
    due_at: datetime,
    status: str,
    customer: str | None,
    closed_at: datetime | None,
    now: datetime,
    priority: str = "normal",
) -> str:
    todo = icalendar.Todo()
    todo.add("uid", todo_uid(task_id))
    todo.add("dtstamp", now.astimezone(UTC))
    todo.add("summary", title)
    todo.add("due", due_at.astimezone(UTC))
    todo.add("status", _STATUS[status])
    todo.add("priority", _PRIORITY.get(priority, 5))
    if customer:
        todo.add("categories", [customer])
        todo.add("description", f"Customer: {customer}")
    if status == "done" and closed_at is not None:
        todo.add("completed", closed_at.astimezone(UTC))
        todo.add("percent-complete", 100)
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//syncd//follow-ups//EN")
    calendar.add("version", "2.0")
    calendar.add_component(todo)
    return str(calendar.to_ical().decode())


def todo_status(text: str) -> str | None:
    """NEEDS-ACTION, IN-PROCESS, COMPLETED or CANCELLED; None when unreadable.

    Apps that do not set STATUS mark completion with COMPLETED or PERCENT-COMPLETE:100.
    """
    try:
        calendar = icalendar.Calendar.from_ical(text)
    except Exception:  # icalendar raises many kinds of errors for bad input
        return None
    for todo in calendar.walk("VTODO"):
        status = str(todo.get("STATUS", "")).upper()
        if status:
            return status
        if "COMPLETED" in todo or str(todo.get("PERCENT-COMPLETE", "")) == "100":
            return "COMPLETED"
        return "NEEDS-ACTION"
    return None
