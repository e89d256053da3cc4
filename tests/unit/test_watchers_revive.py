"""A beat revives the watches that died, and looks at no other (issue #20: a daemon holding
a thousand mailboxes asked each watch whether it was alive every 2.5 s)."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any, cast

import pytest

from syncd.engine import watchers as watchers_module
from syncd.engine.sources import Source
from syncd.engine.watchers import Watchers


class _Hub:
    def __init__(self) -> None:
        self.running = True
        self.dead: list[_Watch] = []

    def take_dead(self) -> list[_Watch]:
        dead, self.dead = self.dead, []
        return dead


class _Watch:
    def __init__(self) -> None:
        self.asked = 0
        self.up = True
        self.ended: str | None = None

    @property
    def alive(self) -> bool:
        self.asked += 1
        return self.up

    def stop(self) -> None:
        self.ended = "stopped"


class _Sessions:
    def watch_source(self, _key: object, _watch: object) -> None:
        pass

    def unwatch_source(self, _key: object) -> None:
        pass


class _Source:
    kind = "mailbox"

    def __init__(self, name: str) -> None:
        self.name = name
        self.watches: list[_Watch] = []

    def watcher(self, _hub: object, _on_change: object, _on_open: object = None) -> _Watch:
        self.watches.append(_Watch())
        return self.watches[-1]


def test_only_the_watches_reported_dead_are_looked_at_and_revived_after_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(watchers_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    hub = _Hub()
    watchers = Watchers(cast(Any, hub), cast(Any, _Sessions()), threading.Event())
    sources = {("mailbox", f"m{i}"): _Source(f"m{i}") for i in range(100)}
    for key, source in sources.items():
        watchers.start(key, cast(Source, source))

    def source_of(key: tuple[str, str]) -> Source | None:
        return cast(Source | None, sources.get(key))

    def asked() -> int:
        return sum(w.asked for s in sources.values() for w in s.watches)

    watchers.revive(source_of)
    assert asked() == 0  # every watch alive: none asked
    key = ("mailbox", "m7")
    dead = sources[key].watches[0]
    dead.up = False
    hub.dead.append(dead)
    watchers.revive(source_of)  # found dead: started again after 1 s, not at once
    assert len(sources[key].watches) == 1 and asked() == dead.asked
    now[0] += 1.1
    watchers.revive(source_of)
    assert len(sources[key].watches) == 2  # back, and the others still never asked
    assert asked() == dead.asked + sources[key].watches[1].asked
    # The hub's thread died: every watch died with it, reported or not.
    hub.running = False
    for source in sources.values():
        source.watches[-1].up = False
    watchers.revive(source_of)
    assert all(s.watches[-1].asked for s in sources.values())
