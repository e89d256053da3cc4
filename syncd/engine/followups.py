"""Evaluate the follow-up rules against the database: after each sync and on a timer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from syncd.config import CalendarConfig, Config, MailboxConfig
from syncd.domain.business_time import WorkingWeek
from syncd.domain.followups import Rules, evaluate
from syncd.engine.quiet import quiet_followups
from syncd.logs import get_logger
from syncd.store import tasks as store

log = get_logger("syncd.tasks")


def evaluate_followups(
    engine: Engine,
    config: Config,
    now: datetime | None = None,
    horizon: list[datetime] | None = None,
) -> dict[str, int]:
    """Create the tasks the rules want and close the ones the mail has settled; idempotent.
    ``horizon`` gets each time after ``now`` at which, the database unchanged, another
    evaluation could do something (a task falling due, a meeting ending, a snooze ending):
    `syncd sync`'s first look evaluates again from the earliest (engine/first_look.py)."""
    now = now or datetime.now(UTC)
    lookback = now - timedelta(days=config.tasks.lookback_days)
    owners = {box.name: box.owner for box in config.mailbox}
    with engine.begin() as conn:
        oldest = store.oldest_active_trigger(conn)
        since = min(lookback, oldest) if oldest else lookback
        emails, meetings = store.facts(conn, since, owners)
        logged = store.logged_facts(conn, since)
        rules = Rules(config.followup_rules(), lookback, working_weeks(config))
        wanted, closings = evaluate(emails, meetings, rules, now, logged, horizon)
        quiet_wanted, quiet_closings = quiet_followups(conn, config, now, lookback, horizon)
        # A customer the CRM dropped (archived by a mirrored directory) gets no new task;
        # its open tasks still close when the mail settles them.
        gone = store.archived_customers(conn)
        wanted = [w for w in wanted + quiet_wanted if w.customer_id not in gone]
        counts = store.apply(conn, wanted, closings + quiet_closings, now)
        if horizon is not None:
            woken = store.next_wake(conn, now)
            if woken is not None:
                horizon.append(woken)
    if counts["created"] or counts["closed"] or counts["woken"]:
        log.info("tasks.evaluated", **counts)
    return counts


def working_weeks(config: Config) -> Callable[[str], WorkingWeek]:
    """``config.working_week_of`` for the many lookups of one evaluation (one per open email):
    an index of the owners instead of a scan of every source each time, which a fleet of
    [[mailbox_group]] members made quadratic."""
    first: dict[str, MailboxConfig | CalendarConfig] = {}
    for box in config.mailbox:
        first.setdefault(box.owner, box)
    for calendar in config.calendar:  # after the mailboxes, as working_week_of looks
        first.setdefault(calendar.owner, calendar)
    default = config.organization.working_week()
    weeks: dict[str, WorkingWeek] = {}  # the reps' own, at most one per source

    def week_of(owner: str) -> WorkingWeek:
        source = first.get(owner)
        if source is None:
            return default
        week = weeks.get(owner)
        if week is None:
            week = weeks[owner] = config.organization.working_week(source)
        return week

    return week_of
