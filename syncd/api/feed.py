"""Long-polled events: requests wait for the next event without a thread each.

One watcher per server reads the newest event id every ``POLL_SECONDS`` while at least one
request waits (the event may be written by a daemon in another process, so there is no
in-process signal to rely on), and wakes every waiter when it moves.  Idle, it reads nothing.
"""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from syncd.store import events

POLL_SECONDS = 0.2
MAX_WAIT = 60


class Feed:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._waiters = 0
        self._changed: asyncio.Condition | None = None
        self._task: asyncio.Task[None] | None = None
        self._last = 0

    async def wait_past(self, after: int, seconds: float) -> None:
        """Return when an event newer than ``after`` may exist, or after ``seconds``."""
        if self._changed is None:
            self._changed = asyncio.Condition()
        self._waiters += 1
        try:
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(self._watch())
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: self._last > after), seconds
                    )
        finally:
            self._waiters -= 1

    async def _watch(self) -> None:
        assert self._changed is not None
        while self._waiters > 0:
            newest = await run_in_threadpool(self._newest)
            if newest != self._last:
                self._last = newest
                async with self._changed:
                    self._changed.notify_all()
            await asyncio.sleep(POLL_SECONDS)

    def _newest(self) -> int:
        with self._engine.connect() as conn:
            return events.last_id(conn)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
