"""Whose turn it is to do the periodic work that covers the whole database.

The follow-up rules and the outbox's upkeep read every mailbox's facts, not a daemon's share:
with several daemons on one PostgreSQL, one run per interval is the whole job and the others
would only repeat it.  Each daemon's timer still fires; the first to find the turn free
takes it, stamped with the database's clock (hosts' clocks disagree), and the others skip
until an interval has passed.  A daemon that dies mid-run loses nothing: the next turn
comes an interval later, on whichever daemon asks first.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, select, update

from syncd.schema.tables import settings
from syncd.store.leases import database_time
from syncd.store.sql import insert_ignore

# A lone daemon asks again an interval after its last run ended, which is always at least
# an interval after that run's stamp; the slack only absorbs the two clocks' rounding.
SLACK = timedelta(seconds=1)


def take_turn(conn: Connection, work: str, every: timedelta) -> bool:
    """True when this caller is to do ``work`` now (and the turn is stamped as taken)."""
    name = f"turn:{work}"
    insert_ignore(conn, settings, [{"name": name, "value": ""}], ["name"])
    query = select(settings.c.value).where(settings.c.name == name)
    if conn.dialect.name == "postgresql":  # SQLite: one writer at a time already
        query = query.with_for_update()
    stamp = conn.scalar(query) or ""
    now = database_time(conn)
    try:
        last = datetime.fromisoformat(stamp)
    except ValueError:  # never taken (or a hand-edited row): the turn is free
        last = None
    # A stamp from the future (the database host's clock was wrong, then set right) frees
    # the turn rather than hold every daemon off until that time comes.
    if last is not None and last.tzinfo is not None and -SLACK <= now - last < every - SLACK:
        return False
    conn.execute(update(settings).where(settings.c.name == name).values(value=now.isoformat()))
    return True
