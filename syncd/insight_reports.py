"""The insight reports as data: ``syncd report`` prints them, the API serves them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from syncd.config import Config
from syncd.domain.responses import BusinessClock, ResponseStats, Wait, summarize
from syncd.store.insight import Week, first_replies, weekly_activity

DEFAULT_SINCE = timedelta(days=90)
MAX_WEEKS = 260


def responses(
    conn: Connection, config: Config, *, since: datetime | None, by: str, now: datetime
) -> list[ResponseStats]:
    """First-response figures per rep (``by="rep"``) or per customer (see ``report responses``)."""
    start = since or now - DEFAULT_SINCE
    owners = {box.name: box.owner for box in config.mailbox}
    asked = first_replies(conn, since=start, until=now, mailboxes=owners)
    clocks: dict[str, BusinessClock] = {}
    waits: list[Wait] = []
    seen: set[int] = set()
    for item in asked:
        rep = owners.get(item.mailbox or "") or item.recipient or "(unknown rep)"
        if by == "rep":
            if item.record_id in seen:
                continue  # linked to two customers: one email, one wait
            seen.add(item.record_id)
        clock = clocks.get(rep)
        if clock is None:
            clock = clocks[rep] = BusinessClock(config.working_week_of(rep))
        group = rep if by == "rep" else item.customer
        waits.append(Wait(group, item.asked_at, item.replied_at, clock))
    return summarize(waits, now)


def week_bounds(now: datetime, weeks: int, zone: ZoneInfo) -> list[datetime]:
    """Midnight of each Monday in ``zone``, from ``weeks - 1`` weeks ago to the next one,
    as UTC instants."""
    today = now.astimezone(zone).date()
    monday = today - timedelta(days=today.weekday())
    days = [monday - timedelta(weeks=weeks - 1 - n) for n in range(weeks + 1)]
    return [datetime(d.year, d.month, d.day, tzinfo=zone).astimezone(UTC) for d in days]


def activity(
    conn: Connection, config: Config, customer_id: int, *, weeks: int, now: datetime
) -> tuple[list[Week], Any]:
    """A customer's weeks, oldest first, and how to label a week (its Monday's date)."""
    zone = ZoneInfo(config.organization.timezone)
    rows = weekly_activity(conn, customer_id, week_bounds(now, weeks, zone))

    def label(week: Week) -> str:
        return week.starts_at.astimezone(zone).date().isoformat()

    return rows, label
