"""SIGTERM drops the work queued on the pool before anything else in the stop: no sync or
verify queued (a takeover's hundreds, a verify wave) starts on a worker freed while the
stop waits for the heartbeat, and a sync dropped keeps no lease until the very end.  And a
stop that runs past its hard limit leaves."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from syncd.engine import daemon as daemon_module
from syncd.engine.daemon import Daemon, Scheduled
from syncd.engine.sources import Source
from syncd.engine.work_pool import WorkPool
from syncd.store.database import open_database

Key = tuple[str, str]


def test_the_pool_gives_back_what_it_dropped() -> None:
    pool = WorkPool(1)
    gate = threading.Event()
    ran: list[str] = []
    pool.submit(lambda _name: gate.wait(5), "running")
    for name in ("q1", "q2"):
        pool.submit(ran.append, name)
    assert sorted(pool.shutdown()) == [("q1",), ("q2",)]
    gate.set()
    pool.wait(time.monotonic() + 5)
    assert ran == [] and not pool.busy()


def test_a_stop_drops_the_queued_syncs_before_waiting_and_releases_their_leases(
    tmp_path: Path,
) -> None:
    config = tmp_path / "syncd.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n')
    daemon = Daemon(config)
    daemon._engine = open_database(f"sqlite:///{tmp_path / 'syncd.db'}")
    pool = daemon._pool = WorkPool(1)
    gate, started = threading.Event(), threading.Event()
    synced: list[str] = []

    def sync(scheduled: Scheduled) -> None:
        if scheduled.name == "busy":
            started.set()
            gate.wait(10)
        synced.append(scheduled.name)

    daemon._sync = sync  # type: ignore[method-assign]
    names = ["busy", "q1", "q2", "q3"]
    for name in names:
        source = cast(Source, SimpleNamespace(kind="mailbox", name=name))
        scheduled = daemon._timetable.sources[("mailbox", name)] = Scheduled(source, due=0.0)
        scheduled.running = True  # taken due, as the loop's dispatch does
        pool.submit(daemon._sync, scheduled)
    assert started.wait(5)

    def slow_heartbeat(_timeout: float) -> None:
        # The write in flight the stop waits for: meanwhile the running sync ends, and a
        # worker is free for whatever is still queued.
        gate.set()
        time.sleep(0.5)

    kept: list[list[Key]] = []
    daemon._heartbeat.join = slow_heartbeat  # type: ignore[method-assign]
    daemon._leases.stopping = lambda _e, busy, **_kw: kept.append(sorted(busy))  # type: ignore[method-assign]
    try:
        daemon._shutdown()
    finally:
        gate.set()
        daemon._engine.dispose()
    assert synced == ["busy"]  # nothing queued started after SIGTERM
    # Only the sync that was running is still counted as such; the dropped ones are not,
    # and their leases go with the first release, not with the last write of the stop.
    assert kept == [[("mailbox", "busy")]]
    assert [n for n in names if daemon._timetable.sources[("mailbox", n)].running] == ["busy"]


def test_a_stop_still_running_at_its_hard_limit_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each step of a stop is bounded, but not their sum on a machine starved of CPU (9.3 s
    # at load 33): at the hard limit from the signal, `syncd run` leaves whatever remains.
    monkeypatch.setattr(daemon_module, "STOP_HARD_AFTER", 0.5)
    config = tmp_path / "syncd.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n')
    daemon = Daemon(config)
    daemon._engine = open_database(f"sqlite:///{tmp_path / 'syncd.db'}")
    daemon._pool = WorkPool(1)
    overran, stuck = threading.Event(), threading.Event()
    daemon.on_overrun = overran.set
    # A step after the release hangs (the LOGOUTs): the hard limit never cuts the release.
    daemon._imap.sessions.close_all = lambda: stuck.wait(10)  # type: ignore[method-assign]
    daemon._stopped_at = time.monotonic()  # the signal
    stop = threading.Thread(target=daemon._shutdown)
    stop.start()
    try:
        assert overran.wait(5)
        assert stop.is_alive()  # the stop was still in its steps
        assert time.monotonic() - daemon._stopped_at < 2.0
    finally:
        stuck.set()
        stop.join(20)
        daemon._engine.dispose()
