"""No IDLE connection outlives its lease, against a real Dovecot: a lease a worker finds lost
while the heartbeat's view, posted before the loss, still lists the source (so the loop counts
it as gained and starts a watch again) leaves no first watch behind in IDLE, holding a
connection on a mailbox another daemon syncs."""

from __future__ import annotations

import time

import pytest

from syncd.engine.daemon import Daemon, Scheduled
from syncd.engine.fleet import FleetView
from syncd.engine.sources import MailboxSource
from tests.conftest import World
from tests.daemon import wait_until

pytestmark = pytest.mark.dovecot


def test_no_idle_connection_outlives_a_lease_lost_on_a_worker(world: World) -> None:
    world.rep("alice")
    path = world.write_config(mailbox={"alice": {"folders": ["INBOX"]}})
    daemon = Daemon(path)
    hub = daemon._imap.hub
    box = daemon._config.mailbox[0]
    scheduled = Scheduled(MailboxSource(None, daemon._config, box), due=time.monotonic())
    key = scheduled.key
    daemon._timetable.sources[key] = scheduled
    daemon._leases.held = frozenset({key})
    try:
        daemon._start_watcher(scheduled)
        wait_until(lambda: hub.open_count() == 1, 10, "the first watch in IDLE")
        scheduled.running = True
        daemon._apply_lost()
        daemon._worker._lost(scheduled)  # after the round's _apply_lost, before its fleet step
        daemon._leases._posted = FleetView(("me",), frozenset({key}))  # posted before the loss
        daemon._apply_fleet()
        daemon._apply_lost()
        assert hub.open_count() <= 1
        daemon._leases._posted = FleetView(("me",), frozenset())  # the other daemon has it
        daemon._apply_fleet()
        daemon._apply_lost()
        # Every watch stopped: their connections close within a moment of the hub's thread.
        wait_until(lambda: hub.open_count() == 0, 10, "no IDLE connection left")
        time.sleep(1.0)  # and none opens again (a watch still connecting would, now)
        assert hub.open_count() == 0
    finally:
        hub.close()
