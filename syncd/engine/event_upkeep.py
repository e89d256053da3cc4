"""The outbox's periodic work, run with the follow-up rules (daemon timer, `syncd sync`):
meetings that ended are announced held, and events past their retention are pruned."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from syncd.config import Config
from syncd.domain.durations import parse_duration
from syncd.logs import get_logger
from syncd.store import event_upkeep as store
from syncd.store.database import reclaim_freed_pages

log = get_logger("syncd.events")


def events_upkeep(
    engine: Engine,
    config: Config,
    now: datetime | None = None,
    horizon: list[datetime] | None = None,
) -> dict[str, int]:
    """``horizon`` gets the earliest time after ``now`` at which, the database unchanged,
    the upkeep would do more than move its mark (``store.next_upkeep``)."""
    now = now or datetime.now(UTC)
    counts = {"held": 0, "pruned": 0, "forgotten_pruned": 0}
    with engine.begin() as conn:
        counts["held"] = store.announce_held(conn, now)
    # [[webhook]] endpoints (syncd/webhooks) delete contact.forgotten once each has it.
    # keep_forgotten bounds it in every case: with no webhook the feed's pull consumers
    # get that long to read it, and an endpoint that failed it (a 4xx, 24 h of errors) or
    # was disabled must not keep a forgotten address in the database for ever.
    if config.webhook:
        counts["forgotten_pruned"] = drop_delivered_forgotten(engine, config)
    with engine.begin() as conn:
        keep = parse_duration(config.events.keep_forgotten)
        pruned = store.prune_forgotten(conn, keep, now)
    if pruned:
        counts["forgotten_pruned"] += pruned
        with engine.connect() as conn:  # the address leaves the SQLite file now, too
            reclaim_freed_pages(conn)
    if config.events.keep is not None:
        keep = parse_duration(config.events.keep)
        while True:  # in batches: a first prune of a long history never holds one huge lock
            with engine.begin() as conn:
                pruned = store.prune_old(conn, keep, now, [hook.name for hook in config.webhook])
            counts["pruned"] += pruned
            if pruned < store.PRUNE_BATCH:
                break
    if horizon is not None:
        keep_old = parse_duration(config.events.keep) if config.events.keep is not None else None
        with engine.connect() as conn:
            soonest = store.next_upkeep(
                conn, now, parse_duration(config.events.keep_forgotten), keep_old
            )
        if soonest is not None:
            horizon.append(soonest)
    if any(counts.values()):
        log.info("events.upkeep", **counts)
    return counts


def drop_delivered_forgotten(engine: Engine, config: Config) -> int:
    """Delete the contact.forgotten events every [[webhook]] endpoint has received, from the
    SQLite file too; `syncd sync` also calls it after its deliveries, so the address does
    not wait for the next cron run to leave the database."""
    from syncd.webhooks.queue import delivered_everywhere

    names = [hook.name for hook in config.webhook]
    with engine.begin() as conn:
        done = delivered_everywhere(conn, store.forgotten_event_ids(conn), names)
        dropped = store.drop_delivered_forgotten(conn, done)
    if dropped:
        with engine.connect() as conn:  # the address leaves the SQLite file now, too
            reclaim_freed_pages(conn)
    return dropped
