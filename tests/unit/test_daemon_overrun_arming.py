"""h-verify review: the stop's hard-limit watcher (daemon.py _arm_overrun).

1. A loop round still in progress at the signal past STOP_HARD_AFTER (the branch measures
   such rounds: "loop" step, load 33) makes the watcher fire at once, before the stop has
   released a single lease: cmd_run's "the leases are free by then" does not hold, and the
   fleet waits for the leases' expiry.
2. The watcher is never disarmed: a stop that completed still gets ``on_overrun`` (in
   `syncd run`: a false ``daemon.stop_overran`` and os._exit(0) during the exit's grace,
   or during the teardown after a crash of the loop).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from syncd.engine import daemon as daemon_module
from syncd.engine.daemon import Daemon
from syncd.engine.work_pool import WorkPool
from syncd.store.database import open_database


def _daemon(tmp_path: Path) -> Daemon:
    config = tmp_path / "syncd.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n')
    daemon = Daemon(config)
    daemon._engine = open_database(f"sqlite:///{tmp_path / 'syncd.db'}")
    daemon._pool = WorkPool(1)
    return daemon


def test_the_hard_limit_never_leaves_before_the_leases_are_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon_module, "STOP_HARD_AFTER", 0.5)
    daemon = _daemon(tmp_path)
    events: list[str] = []
    left = threading.Event()

    def overrun() -> None:
        events.append("exit")
        left.set()

    daemon.on_overrun = overrun
    daemon._leases.stopping = lambda *_a, **_kw: events.append("released")  # type: ignore[method-assign]
    # A claim in flight the stop waits for (bounded at 2 s by the stop itself).
    daemon._heartbeat.join = lambda _timeout: time.sleep(0.3)  # type: ignore[method-assign]
    # The loop's round at the signal (a takeover's claim at load 33) ran past the limit.
    daemon._stopped_at = time.monotonic() - 0.6
    try:
        daemon._shutdown()
        left.wait(1.0)
    finally:
        daemon._engine.dispose()  # type: ignore[union-attr]
    assert events[:1] == ["released"], events


def test_a_stop_that_completed_does_not_overrun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon_module, "STOP_HARD_AFTER", 0.5)
    daemon = _daemon(tmp_path)
    overran = threading.Event()
    daemon.on_overrun = overran.set
    daemon._stopped_at = time.monotonic()
    try:
        daemon._shutdown()
    finally:
        daemon._engine.dispose()  # type: ignore[union-attr]
    took = time.monotonic() - daemon._stopped_at
    assert took < 0.5, f"the stop itself took {took:.2f} s: the test proves nothing"
    # The process goes on after the stop (cmd_run: lingering threads' grace, logging
    # shutdown; after a crash of the loop: the interpreter's teardown).
    assert not overran.wait(1.0), "on_overrun called after the stop had completed"
