"""One pass, as `syncd sync` and the daemon's workers run it (engine/passes.py), and the
daemon's watches telling the loop of news without calling it (engine/watchers.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import Connection

from syncd.domain.matching import Directory
from syncd.engine.passes import sync_pass
from syncd.engine.sources import PlaceCounts, Source, SyncReport
from syncd.engine.watchers import Watchers
from syncd.errors import RemoteError, TransientError


class _Source:
    """A source that records what the pass asked of it, in order, in a shared journal."""

    kind = "calendar"

    def __init__(
        self,
        name: str,
        journal: list[str],
        *,
        account: RemoteError | None = None,
        push: RemoteError | None = None,
    ) -> None:
        self.name = name
        self._journal = journal
        self._account = account
        self._push = push

    def sync(self, _directory: Directory, **_kwargs: Any) -> SyncReport:
        self._journal.append(f"sync {self.name}")
        return SyncReport("calendar", self.name, [PlaceCounts("Work", captured=1)], self._account)

    def push_tasks(self, fence: Callable[[Connection], None]) -> dict[str, int] | None:
        self._journal.append(f"push {self.name}")
        if self._push is not None:
            raise self._push
        return {"written": 1, "done": 0, "dismissed": 0}


def test_the_rules_run_between_the_syncs_and_the_task_lists_of_sources_that_synced() -> None:
    journal: list[str] = []
    down = TransientError("dav.example.com: connection refused")
    refused = RemoteError("task list refused")
    sources = [
        _Source("a", journal),
        _Source("b", journal, account=down),
        _Source("c", journal, push=refused),
    ]
    results = sync_pass(
        cast(list[Source], sources), cast(Directory, None), rules=lambda: journal.append("rules")
    )
    # Every sync, then the rules once, then the task lists: they get what this pass made.
    assert journal == ["sync a", "sync b", "sync c", "rules", "push a", "push c"]
    a, b, c = results
    assert a.error is None and a.tasks == {"written": 1, "done": 0, "dismissed": 0}
    assert b.error is down and b.tasks is None and b.tasks_error is None  # its server is down
    assert c.report.error is None and c.tasks_error is refused and c.error is refused


def test_without_rules_a_pass_syncs_then_pushes() -> None:
    journal: list[str] = []
    (result,) = sync_pass([cast(Source, _Source("a", journal))], cast(Directory, None))
    assert journal == ["sync a", "push a"] and result.report.total("captured") == 1


class _Watch:
    alive = True
    ended: str | None = None

    def stop(self) -> None:
        self.ended = "stopped"


class _Sessions:
    def __init__(self) -> None:
        self.watched: dict[tuple[str, str], object] = {}

    def watch_source(self, key: tuple[str, str], watch: object) -> None:
        self.watched[key] = watch

    def unwatch_source(self, key: tuple[str, str]) -> None:
        self.watched.pop(key, None)


class _Pushing:
    """A source whose watch hands its callbacks to the test."""

    kind = "mailbox"
    name = "alice"

    def __init__(self) -> None:
        self.news: Callable[[str], None] | None = None
        self.opened: Callable[[tuple[int | None, int | None]], None] | None = None

    def watcher(self, _hub: object, on_change: Any, on_open: Any = None) -> _Watch:
        self.news, self.opened = on_change, on_open
        return _Watch()


def test_a_watch_notes_news_and_rings_the_alarm_without_calling_the_loop() -> None:
    alarm = threading.Event()
    sessions = _Sessions()
    watchers = Watchers(cast(Any, None), cast(Any, sessions), alarm)
    source = _Pushing()
    key = ("mailbox", "alice")
    assert watchers.start(key, cast(Source, source), taken_over=True)
    assert key in sessions.watched and watchers.alive(key)
    assert source.news is not None and source.opened is not None
    source.news("INBOX")
    source.opened((7, 42))
    assert alarm.is_set()
    assert watchers.take_news() == {key} and watchers.take_news() == set()
    assert watchers.take_opened() == {key: (7, 42)} and watchers.take_opened() == {}
    source.news("INBOX")
    watchers.stop(key)  # news of a source no longer watched is dropped with its watch
    assert watchers.take_news() == set() and key not in sessions.watched
    assert not watchers.alive(key)
