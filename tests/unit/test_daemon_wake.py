"""IMAP IDLE wakes a source while its sync runs: the daemon syncs again right after, not at
the next poll (a message written between the sync's read of INBOX and its end waited for
the whole [sync] interval, 60 s by default)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from syncd.engine.daemon import Daemon, Scheduled
from syncd.engine.schedule import Outcome


def _daemon(tmp_path: Path) -> tuple[Daemon, Scheduled]:
    config = tmp_path / "syncd.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n')
    daemon = Daemon(config)
    source = cast(Any, SimpleNamespace(kind="mailbox", name="alice"))
    scheduled = Scheduled(source=source, due=time.monotonic(), running=True)
    daemon._sources[("mailbox", "alice")] = scheduled
    return daemon, scheduled


def test_new_mail_during_a_sync_is_synced_right_after_it(tmp_path: Path) -> None:
    daemon, scheduled = _daemon(tmp_path)
    daemon.wake(("mailbox", "alice"))  # EXISTS arrives while the sync runs
    daemon._finish(scheduled, Outcome(), None, record=False)
    assert not scheduled.running and not scheduled.woken
    assert scheduled.due <= time.monotonic()  # due now, not in [sync] interval


def test_without_new_mail_the_next_sync_waits_for_the_interval(tmp_path: Path) -> None:
    daemon, scheduled = _daemon(tmp_path)
    daemon._finish(scheduled, Outcome(), None, record=False)
    assert scheduled.due > time.monotonic() + 30  # [sync] interval = 60 s, jitter 10 %

    scheduled.running = False  # a wake between syncs: due now, nothing held over
    daemon.wake(("mailbox", "alice"))
    assert scheduled.due <= time.monotonic() and not scheduled.woken
