"""Evaluate the follow-up rules against the database: after each sync and on a timer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import Engine

from syncd.config import Config
from syncd.domain.followups import Rules, evaluate
from syncd.store import tasks as store

log = structlog.get_logger("syncd.tasks")


def evaluate_followups(
    engine: Engine, config: Config, now: datetime | None = None
) -> dict[str, int]:
    """Create the tasks the rules want and close the ones the mail has settled; idempotent."""
    now = now or datetime.now(UTC)
    lookback = now - timedelta(days=config.tasks.lookback_days)
    owners = {box.name: box.owner for box in config.mailbox}
    with engine.begin() as conn:
        oldest = store.oldest_active_trigger(conn)
        since = min(lookback, oldest) if oldest else lookback
        emails, meetings = store.facts(conn, since, owners)
        rules = Rules(config.followup_rules(), lookback, config.working_week_of)
        wanted, closings = evaluate(emails, meetings, rules, now)
        counts = store.apply(conn, wanted, closings, now)
    if counts["created"] or counts["closed"] or counts["woken"]:
        log.info("tasks.evaluated", **counts)
    return counts
