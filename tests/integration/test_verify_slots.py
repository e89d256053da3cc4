"""A daemon with every verify due at once still syncs new mail at once, on the real Dovecot
(issue #20): verifies take at most half of the worker pool, so a sync never queues behind
more than that many, however many are due (a fleet's first verify wave is 2,500 a daemon;
the syncs of a takeover waited behind all of them, handovers of 32 s and 83 s).

The verifies are held at a gate, as verifies of big mailboxes on a slow server would be: a
sync that queued behind them would never run while it is closed."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from syncd.engine.daemon import Daemon
from syncd.engine.sources import Fence, MailboxSource
from syncd.engine.verify import SourceReport
from tests.conftest import World
from tests.daemon import wait_until
from tests.mail import make_message
from tests.servers.sample import CUSTOMERS_CSV

pytestmark = pytest.mark.dovecot

MAILBOXES = 6


def test_new_mail_is_synced_at_once_while_verifies_of_every_mailbox_are_due(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"rep{i}" for i in range(MAILBOXES)]
    for name in names:
        world.rep(name)
    world.customers(CUSTOMERS_CSV)
    # Two workers: one verify at a time.  Verifies first due a second after start; polls
    # every 10 minutes, so only the watch's news can sync the mail below in time.
    path = world.write_config(extra="[sync]\ninterval = 600\nconcurrency = 2\nverify_interval = 1")
    gate = threading.Event()
    entered: list[str] = []
    verified: list[str] = []
    verify = MailboxSource.verify

    def held_at_the_gate(
        self: MailboxSource, fence: Fence, *, should_stop: Callable[[], bool]
    ) -> SourceReport:
        entered.append(self.name)
        gate.wait(60)
        report = verify(self, fence, should_stop=should_stop)
        verified.append(self.name)
        return report

    monkeypatch.setattr(MailboxSource, "verify", held_at_the_gate)
    daemon = Daemon(path)
    monkeypatch.setattr(daemon, "_install_signals", lambda: None)  # not the main thread
    outcome: list[Any] = []
    runner = threading.Thread(target=lambda: outcome.append(daemon.run()), daemon=True)
    runner.start()
    try:
        # Every mailbox's first sync done, and its watch in IDLE.
        wait_until(lambda: daemon._timetable.counters.syncs >= MAILBOXES, 30, "first syncs")
        wait_until(lambda: daemon._watchers.open_count() == MAILBOXES, 30, "the watches")
        wait_until(lambda: bool(entered), 30, "a verify")
        # Every verify is due by now; one is running, none waits in the pool's queue.
        assert len(entered) == 1 and daemon._jobs.verifying() == 1
        world.deliver("rep3", make_message(message_id="<slots@acme.com>"))
        wait_until(lambda: len(world.records()) == 1, 20, "the new mail, while verifies wait")
        assert not gate.is_set() and verified == []
        gate.set()
        # Then every mailbox is verified, one at a time.
        wait_until(lambda: set(verified) == set(names), 60, "every verify")
        assert daemon._jobs.verifying() <= 1
    finally:
        gate.set()
        daemon._stop.set()
        daemon._alarm.set()
        runner.join(30)
    assert outcome == [0]
