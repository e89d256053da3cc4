"""Watches are started and stopped on the daemon's loop thread only: a worker that finds a
lease gone, or a source back from "attention", notes it in the timetable, and the loop acts
on it at its next round, so that no watch outlives its lease (a worker's stop racing the
loop's start of the same watch left a source held and unwatched, or watched and not held)."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any, cast

from syncd.engine.daemon import Daemon, Scheduled
from syncd.engine.fleet import LEASE, FleetView
from syncd.engine.schedule import Outcome
from syncd.engine.sources import SyncReport
from syncd.engine.work_pool import WorkPool
from syncd.store import leases
from syncd.store.database import open_database
from tests.servers.ports import free_port

KEY = ("mailbox", "alice")


class FakeWatch:
    """A watch as the daemon's real Watchers sees it: stopped once, or never."""

    def __init__(self) -> None:
        self.stops = 0
        self.ended: str | None = None

    def stop(self) -> None:
        self.stops += 1
        self.ended = "stopped"

    @property
    def alive(self) -> bool:
        return self.ended is None

    def join(self, _timeout: float) -> None:
        pass


class Src:
    """A mailbox whose server can push: every watch it made, to find one left running."""

    kind = "mailbox"
    name = "alice"
    news_at_login = False

    def __init__(self) -> None:
        self.made: list[FakeWatch] = []

    def watcher(self, _hub: object, _news: object, _opened: object) -> FakeWatch:
        watch = FakeWatch()
        self.made.append(watch)
        return watch

    # A pass that finds the account fine (the only I/O of a sync, stubbed).
    record_kind = "email"

    def sync(self, _directory: object, **_how: object) -> SyncReport:
        return SyncReport("mailbox", "alice")

    def push_tasks(self, _fence: object) -> None:
        return None

    def running(self) -> list[int]:
        return [i for i, watch in enumerate(self.made) if watch.alive]


def _daemon(tmp_path: Path) -> tuple[Daemon, Scheduled, Src]:
    config = tmp_path / "syncd.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n')
    daemon = Daemon(config)
    src = Src()
    scheduled = Scheduled(source=cast(Any, src), due=time.monotonic(), running=True)
    daemon._timetable.sources[KEY] = scheduled
    daemon._leases.held = frozenset({KEY})
    assert daemon._start_watcher(scheduled)  # the real Watchers, a fake watch
    return daemon, scheduled, src


def test_a_lease_a_worker_found_lost_stops_its_watch_on_the_loop(tmp_path: Path) -> None:
    daemon, scheduled, src = _daemon(tmp_path)
    daemon._worker._lost(scheduled)  # on a worker: nothing stopped there
    assert src.running() == [0] and KEY not in daemon._leases.held
    assert scheduled.reason == "held by another daemon" and not scheduled.running
    daemon._apply_lost()  # the loop's next round
    assert src.running() == [] and src.made[0].stops == 1
    daemon._apply_lost()
    assert src.made[0].stops == 1 and len(src.made) == 1  # taken once


def test_a_lease_back_before_the_loop_came_round_keeps_its_watch(tmp_path: Path) -> None:
    daemon, scheduled, src = _daemon(tmp_path)
    daemon._worker._lost(scheduled)
    daemon._leases.held = frozenset({KEY})  # a heartbeat gave it back meanwhile
    daemon._apply_lost()
    assert src.running() == [0] and len(src.made) == 1


def test_a_source_back_from_attention_is_watched_again_by_the_loop(tmp_path: Path) -> None:
    daemon, scheduled, src = _daemon(tmp_path)
    src.made[0].ended = "login refused"  # its watch ended with the refused login
    scheduled.state = "attention"
    daemon._worker.finish(scheduled, Outcome(), None)  # on a worker: a sync succeeded
    assert len(src.made) == 1 and scheduled.state == "ok"
    daemon._apply_recovered()
    assert src.running() == [1]
    daemon._apply_recovered()
    assert src.running() == [1] and len(src.made) == 2


def test_a_source_back_from_attention_but_not_held_is_not_watched(tmp_path: Path) -> None:
    daemon, scheduled, src = _daemon(tmp_path)
    src.made[0].ended = "login refused"
    scheduled.state = "attention"
    daemon._worker.finish(scheduled, Outcome(), None)
    daemon._leases.held = frozenset()
    daemon._apply_recovered()
    assert len(src.made) == 1


def test_a_second_start_stops_the_watch_it_replaces(tmp_path: Path) -> None:
    daemon, scheduled, src = _daemon(tmp_path)
    daemon._start_watcher(scheduled)
    assert src.running() == [1] and src.made[0].stops == 1


def test_a_lost_lease_noted_between_apply_lost_and_apply_fleet_leaves_no_orphan_watch(
    tmp_path: Path,
) -> None:
    """The reviewer's sequence: a worker notes the loss after the round's _apply_lost, and
    the heartbeat's view, posted before the loss, still lists the source (so it counts as
    gained and a second watch starts).  The first one must not be left running."""
    daemon, scheduled, src = _daemon(tmp_path)
    daemon._apply_lost()
    daemon._worker._lost(scheduled)
    daemon._leases._posted = FleetView(("me",), frozenset({KEY}))
    daemon._apply_fleet()
    daemon._apply_lost()
    assert len(src.running()) <= 1  # never two watches on one mailbox
    daemon._leases._posted = FleetView(("me",), frozenset())
    daemon._apply_fleet()
    daemon._apply_lost()
    assert src.running() == []


def test_a_real_sync_back_from_attention_restarts_the_watch(tmp_path: Path) -> None:
    """Through the worker's own sync (a real database, the lease held, only the server's
    pass stubbed): the pass sets "syncing" while it runs, and a source that was in
    "attention" before it is still noted as back, so the loop starts its watch again."""
    daemon, scheduled, src = _daemon(tmp_path)
    engine = open_database(daemon._config.database.url)
    try:
        with engine.begin() as conn:
            assert leases.claim(conn, "mailbox", "alice", daemon.id, LEASE)
        src.made[0].ended = "login refused"  # the watch ended with the refusal
        scheduled.state, scheduled.reason = "attention", "login refused"
        daemon._worker.sync(engine, scheduled)  # the login is accepted again
        assert scheduled.state == "ok" and not scheduled.running
        daemon._apply_recovered()
        assert src.running() == [1]
    finally:
        engine.dispose()


def test_a_stop_closes_the_metrics_listener_before_the_push_hub(tmp_path: Path) -> None:
    """A scrape renders every mailbox's series holding the GIL: the listener goes first,
    so that no new render slows the steps of the stop behind it (the hub's close)."""
    port = free_port()
    config = tmp_path / "syncd.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n'
        f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
    )
    daemon = Daemon(config)
    daemon._engine = open_database(daemon._config.database.url)
    daemon._pool = WorkPool(1)
    daemon._services.listen(daemon._config, lambda: True)
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # listening
    refused: list[bool] = []
    close = daemon._imap.hub.close

    def closing(timeout: float = 1.0) -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                refused.append(False)
        except OSError:
            refused.append(True)
        close(timeout)

    daemon._imap.hub.close = closing  # type: ignore[method-assign]
    try:
        daemon._shutdown()
    finally:
        daemon._engine.dispose()
    assert refused == [True]
