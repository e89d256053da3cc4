"""A verify asked to stop (the daemon's SIGTERM) ends at its next batch, against the real
Dovecot: the verify of a big mailbox re-reading thousands of messages must not hold a stop
for the whole of it, and what it decided before the stop is kept."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, func, select

from syncd.config_file import load_config
from syncd.engine.sources import MailboxSource
from syncd.errors import VerifyStopped
from syncd.schema.tables import skipped_messages
from syncd.store.database import open_database
from tests.conftest import World
from tests.mail import make_message
from tests.servers.sample import CUSTOMERS_CSV

pytestmark = pytest.mark.dovecot


def _bulk(n: int) -> bytes:
    return make_message(
        message_id=f"<news{n}@acme.com>", subject=f"News {n}", headers={"List-Id": "<n.acme.com>"}
    )


def test_a_verify_stops_at_its_next_batch_and_keeps_what_it_decided(world: World) -> None:
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    for n in range(6):
        world.deliver("alice", _bulk(n))
    world.write_config(capture="batch_size = 2")
    world.cli("sync")
    # As a database captured by an older syncd: skips were only counted, so the verify
    # reads every message again and decides it, a batch of two at a time.
    engine = open_database(world.db_url)
    try:
        with engine.begin() as conn:
            conn.execute(delete(skipped_messages))
        config = load_config(world.config_path)
        source = MailboxSource(engine, config, config.mailbox[0])
        asked: list[int] = []

        def stop_at_the_second_batch() -> bool:
            asked.append(1)
            return len(asked) == 3  # the folder, the first batch, then the second: stop

        with pytest.raises(VerifyStopped):
            source.verify(should_stop=stop_at_the_second_batch)
        assert len(asked) == 3  # not asked again: it stopped there

        def skips() -> Any:
            with engine.connect() as conn:
                return conn.scalar(select(func.count()).select_from(skipped_messages))

        assert skips() == 2  # the first batch's decisions are on record
        report = source.verify()  # not stopped: the rest
        assert report.missing == 0 and not report.failed
        assert skips() == 6
    finally:
        engine.dispose()
