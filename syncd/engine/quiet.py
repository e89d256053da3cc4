"""The gone_quiet rule against the database: what it wants and what new contact settled."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from syncd.config import Config
from syncd.domain.followups import Closing, Wanted
from syncd.domain.quiet import gone_quiet
from syncd.store import quiet as store


def quiet_followups(
    conn: Connection,
    config: Config,
    now: datetime,
    lookback_start: datetime,
    horizon: list[datetime] | None = None,
) -> tuple[list[Wanted], list[Closing]]:
    """Closings whatever the config says (a switched-off rule still lets contact close its
    tasks); wanted tasks only while the rule is on.  ``horizon`` gets the times after
    ``now`` at which, the records unchanged, the rule could want a task."""
    closings = store.settled(conn)
    rule = config.gone_quiet()
    if rule is None:
        return [], closings
    facts = store.quiet_customers(
        conn,
        rule,
        now=now,
        lookback_start=lookback_start,
        mailbox_owners={box.name: box.owner for box in config.mailbox},
        calendar_owners={cal.name: cal.owner for cal in config.calendar},
    )
    if horizon is not None:  # customers heard from too lately to be read above
        soonest = store.next_quiet(conn, rule, now)
        if soonest is not None:
            horizon.append(soonest)
    wanted: dict[int, Wanted] = {}
    for customer in sorted(facts, key=lambda c: c.customer_id):
        task = gone_quiet(customer, rule, config.working_week_of, now, lookback_start, horizon)
        # One task per trigger record: a last email shared by two quiet customers asks once.
        if task is not None and task.record_id not in wanted:
            wanted[task.record_id] = task
    return list(wanted.values()), closings
