"""The daemon's watches: push (IMAP IDLE) on the sources it holds, and their revival.

A watch says two things, and says them here, never to the loop: a source has news (sync it
now), and, for a source just taken over, what its first login found (``take_opened``).  Each
rings the loop's alarm; the loop takes what was noted when it comes round.  A watch that
died of something it could not catch is started again with backoff (``revive``): until it
is back the source is still polled every interval, only push is delayed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from syncd.engine.imap.idle_hub import RECONNECT_MAX, IdleHub
from syncd.engine.imap.idle_watch import Watch
from syncd.engine.imap.sessions import DaemonSessions
from syncd.engine.sources import Source
from syncd.logs import get_logger

log = get_logger("syncd.daemon")

Key = tuple[str, str]  # (kind, name)
Opened = tuple[int | None, int | None]  # what a watch's first login found (sources.OnOpen)


@dataclass(slots=True)
class _Deaths:
    """A watch's unexpected deaths, for the backoff of its restarts."""

    count: int = 0
    restart_at: float | None = None  # monotonic time of the pending restart
    restarted: float = 0.0  # monotonic time of the last restart


class Watchers:
    def __init__(self, hub: IdleHub, sessions: DaemonSessions, alarm: threading.Event) -> None:
        self._hub = hub
        self._sessions = sessions  # a watch's connection is the one a poll borrows
        self._alarm = alarm
        self._lock = threading.Lock()
        self._watches: dict[Key, Watch] = {}
        self._keys: dict[Watch, Key] = {}  # the other way round, for the hub's dead watches
        self._deaths: dict[Key, _Deaths] = {}
        self._news: set[Key] = set()
        self._opened: dict[Key, Opened] = {}

    def __getitem__(self, key: Key) -> Watch:
        with self._lock:
            return self._watches[key]

    def alive(self, key: Key) -> bool:
        with self._lock:
            watch = self._watches.get(key)
        return watch is not None and watch.alive

    def start(self, key: Key, source: Source, *, taken_over: bool = False) -> bool:
        """Watch ``source`` if its server can push; True when a watch was started.  For a
        source ``taken_over`` from another daemon, its first login is noted for the loop."""

        def news(_name: str) -> None:
            with self._lock:
                self._news.add(key)
            self._alarm.set()

        def opened(found: Opened) -> None:
            with self._lock:
                self._opened[key] = found
            self._alarm.set()

        watch = source.watcher(self._hub, news, opened if taken_over else None)
        if watch is None:
            return False
        with self._lock:
            replaced = self._watches.get(key)
            if replaced is not None:
                self._keys.pop(replaced, None)
            self._watches[key] = watch
            self._keys[watch] = key
        if replaced is not None and replaced is not watch:
            # Forgotten here, a watch still running would hold its IDLE connection for
            # good: nothing would ever stop it (a lease lost and gained back in one round).
            replaced.stop()
        self._sessions.watch_source(key, watch)
        return True

    def stop(self, key: Key) -> None:
        with self._lock:
            watch = self._watches.pop(key, None)
            if watch is not None:
                self._keys.pop(watch, None)
            self._deaths.pop(key, None)
            self._news.discard(key)
            self._opened.pop(key, None)
        if watch is not None:
            watch.stop()
        self._sessions.unwatch_source(key)

    def take_news(self) -> set[Key]:
        """The sources whose server reported new items since the last call."""
        with self._lock:
            news, self._news = self._news, set()
        return news

    def take_opened(self) -> dict[Key, Opened]:
        """Sources taken over whose watch logged in since the last call, with what it found."""
        with self._lock:
            opened, self._opened = self._opened, {}
        return opened

    def revive(self, source_of: Callable[[Key], Source | None]) -> None:
        """Start again, with backoff, watches that died instead of ending on purpose: a
        watch survives any exception by itself; this is for what it cannot catch (its step
        raised past every handler, or the hub's selector thread died).  ``source_of``: the
        source a key stands for now (None: removed).

        Called at every beat, it looks only at the watches the hub reported dead and at
        those already in backoff, never at every watch: a thousand live watches cost it
        nothing (the hub's thread itself dead: every watch, until one is started again)."""
        now = time.monotonic()
        died = self._hub.take_dead()
        with self._lock:
            suspects = list(self._watches) if not self._hub.running else list(self._deaths)
            suspects += [key for watch in died if (key := self._keys.get(watch)) is not None]
        for key in dict.fromkeys(suspects):
            with self._lock:
                watch = self._watches.get(key)
                if watch is None:
                    continue  # stopped meanwhile
                deaths = self._deaths.get(key)
                if watch.alive:
                    if deaths is not None and now - deaths.restarted > RECONNECT_MAX:
                        del self._deaths[key]  # up for a while: backoff starts over
                    continue
                source = source_of(key)
                if watch.ended is not None or source is None:
                    continue
                if deaths is None:
                    deaths = self._deaths[key] = _Deaths()
                if deaths.restart_at is None:  # just found dead: wait, doubling each time
                    deaths.count += 1
                    delay = min(RECONNECT_MAX, 2.0 ** (deaths.count - 1))
                    deaths.restart_at = now + delay
                    log.error(
                        "idle.watcher_died", **{key[0]: key[1]}, deaths=deaths.count, retry_in=delay
                    )
                    continue
                if now < deaths.restart_at:
                    continue
                deaths.restart_at, deaths.restarted = None, now
            self.start(key, source)
            log.info("idle.watcher_restarted", **{key[0]: key[1]}, deaths=deaths.count)

    def open_count(self) -> int:
        return self._hub.open_count()

    def join(self, within: float) -> None:
        """Wait ``within`` seconds in all for the watches the hub's close ended."""
        deadline = time.monotonic() + within
        with self._lock:
            watches = list(self._watches.values())
        for watch in watches:
            watch.join(max(0.0, deadline - time.monotonic()))
