"""Watches are started and stopped on the daemon's loop thread only: a worker that finds a
lease gone, or a source back from "attention", notes it in the timetable, and the loop acts
on it at its next round, so that no watch outlives its lease (a worker's stop racing the
loop's start of the same watch left a source held and unwatched, or watched and not held)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from syncd.engine.daemon import Daemon, Scheduled
from syncd.engine.schedule import Outcome

KEY = ("mailbox", "alice")


class FakeWatchers:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.live: set[tuple[str, str]] = set()

    def stop(self, key: tuple[str, str]) -> None:
        self.calls.append("stop")
        self.live.discard(key)

    def start(self, key: tuple[str, str], _source: object, *, taken_over: bool = False) -> bool:
        self.calls.append("start")
        self.live.add(key)
        return True

    def alive(self, key: tuple[str, str]) -> bool:
        return key in self.live


def _daemon(tmp_path: Path) -> tuple[Daemon, Scheduled, FakeWatchers]:
    config = tmp_path / "syncd.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n')
    daemon = Daemon(config)
    source = cast(Any, SimpleNamespace(kind="mailbox", name="alice"))
    scheduled = Scheduled(source=source, due=time.monotonic(), running=True)
    daemon._timetable.sources[KEY] = scheduled
    watchers = FakeWatchers()
    watchers.live.add(KEY)
    daemon._watchers = cast(Any, watchers)
    daemon._leases.held = frozenset({KEY})
    return daemon, scheduled, watchers


def test_a_lease_a_worker_found_lost_stops_its_watch_on_the_loop(tmp_path: Path) -> None:
    daemon, scheduled, watchers = _daemon(tmp_path)
    daemon._worker._lost(scheduled)  # on a worker: nothing stopped there
    assert watchers.calls == [] and KEY not in daemon._leases.held
    assert scheduled.reason == "held by another daemon" and not scheduled.running
    daemon._apply_lost()  # the loop's next round
    assert watchers.calls == ["stop"]
    daemon._apply_lost()
    assert watchers.calls == ["stop"]  # taken once


def test_a_lease_back_before_the_loop_came_round_keeps_its_watch(tmp_path: Path) -> None:
    daemon, scheduled, watchers = _daemon(tmp_path)
    daemon._worker._lost(scheduled)
    daemon._leases.held = frozenset({KEY})  # a heartbeat gave it back meanwhile
    daemon._apply_lost()
    assert watchers.calls == []


def test_a_source_back_from_attention_is_watched_again_by_the_loop(tmp_path: Path) -> None:
    daemon, scheduled, watchers = _daemon(tmp_path)
    watchers.live.clear()  # its watch ended with the refused login
    scheduled.state = "attention"
    daemon._worker.finish(scheduled, Outcome(), None)  # on a worker: a sync succeeded
    assert watchers.calls == [] and scheduled.state == "ok"
    daemon._apply_recovered()
    assert watchers.calls == ["start"]
    daemon._apply_recovered()
    assert watchers.calls == ["start"]


def test_a_source_back_from_attention_but_not_held_is_not_watched(tmp_path: Path) -> None:
    daemon, scheduled, watchers = _daemon(tmp_path)
    watchers.live.clear()
    scheduled.state = "attention"
    daemon._worker.finish(scheduled, Outcome(), None)
    daemon._leases.held = frozenset()
    daemon._apply_recovered()
    assert watchers.calls == []
