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
    daemon._timetable.sources[("mailbox", "alice")] = scheduled
    return daemon, scheduled


def test_new_mail_during_a_sync_is_synced_right_after_it(tmp_path: Path) -> None:
    daemon, scheduled = _daemon(tmp_path)
    daemon.wake(("mailbox", "alice"))  # EXISTS arrives while the sync runs
    daemon._worker.finish(scheduled, Outcome(), None)
    assert not scheduled.running and not scheduled.woken
    assert scheduled.due <= time.monotonic()  # due now, not in [sync] interval


def test_without_new_mail_the_next_sync_waits_for_the_interval(tmp_path: Path) -> None:
    daemon, scheduled = _daemon(tmp_path)
    daemon._worker.finish(scheduled, Outcome(), None)
    assert scheduled.due > time.monotonic() + 30  # [sync] interval = 60 s, jitter 10 %

    scheduled.running = False  # a wake between syncs: due now, nothing held over
    daemon.wake(("mailbox", "alice"))
    assert scheduled.due <= time.monotonic() and not scheduled.woken


class _Checked:
    """A source whose cheap poll would say nothing changed, counting how often it is asked."""

    kind = "mailbox"
    name = "alice"
    record_kind = "email"

    def __init__(self) -> None:
        self.asked = 0

    def unchanged(self) -> list[str] | None:
        self.asked += 1
        return ["INBOX"]


def test_a_poll_after_new_mail_is_a_full_pass_never_the_cheap_one(tmp_path: Path) -> None:
    """The cheap poll trusts the IDLE watch for INBOX (no STATUS): once the watch reported
    mail, the next sync must read the server whatever the cheap poll would say."""
    daemon, scheduled = _daemon(tmp_path)
    source = _Checked()
    scheduled.source = cast(Any, source)
    scheduled.running = False
    passes: list[str] = []

    def full_pass(*_args: Any, **_kwargs: Any) -> None:
        # The pass (and its health write) begins with a transaction: far enough.
        passes.append("begin")
        raise RuntimeError("stop here")

    daemon._engine = cast(Any, SimpleNamespace(begin=full_pass))
    daemon._sync(scheduled)  # no news: the cheap poll answers
    assert source.asked == 1 and passes == []
    daemon.wake(("mailbox", "alice"))
    assert scheduled.news
    scheduled.state, scheduled.reason = "ok", None
    daemon._sync(scheduled)  # news: straight to the pass
    assert source.asked == 1 and passes and not scheduled.news
    began = len(passes)
    scheduled.state, scheduled.reason = "ok", None
    daemon._sync(scheduled)  # the news was taken by that sync: cheap again
    assert source.asked == 2 and len(passes) == began
