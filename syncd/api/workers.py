"""Threads for the lean path's database reads, handed over with as little as Python allows.

anyio's thread pool (what FastAPI uses) spent more of the GIL handing a page to a thread and
back than reading it: a ``queue.Queue`` (a lock and a condition in Python), a capacity
limiter and a cancel scope a call.  Here a job is one ``SimpleQueue.put`` (C) and its answer
one ``call_soon_threadsafe``.  The threads are few: SQLite and psycopg release the GIL
while the database works, which is all that threads buy here.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class Workers:
    def __init__(self, count: int, name: str = "api-read") -> None:
        self._count = count
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._started = False
        self._stopped = False
        self._lock = threading.Lock()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in one of the threads; its result or its exception here."""
        if not self._started:
            if self._stopped:
                raise RuntimeError("the API is stopping")
            self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, fn, args))
        return await future

    def _start(self) -> None:
        with self._lock:
            if not self._started and not self._stopped:
                self._threads = [
                    threading.Thread(target=self._work, name=f"{self._name}-{n}", daemon=True)
                    for n in range(self._count)
                ]
                for thread in self._threads:
                    thread.start()
                self._started = True

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, future, fn, args = job
            if future.done():  # its request was cancelled (shutdown, client gone): no read
                continue
            try:
                result = fn(*args)
            except BaseException as err:  # handed to the request, which answers for it
                _answer(loop, future, None, err)
            else:
                _answer(loop, future, result, None)

    def stop(self, timeout: float = 5.0) -> bool:
        """Cancel the jobs still queued, let every thread finish its job in hand, then end;
        True once every thread has ended.  Blocks: from the event loop, call it through
        ``asyncio.to_thread``.  Called again, it only waits for the threads."""
        deadline = time.monotonic() + timeout
        with self._lock:
            started, self._started, self._stopped = self._started, False, True
        if started:
            # Behind the stop markers, queued reads would all run first: for requests
            # that uvicorn's shutdown is about to cancel, or has cancelled already.
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    _cancel(job[0], job[1])
            for _ in self._threads:
                self._jobs.put(None)
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)


def _cancel(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for it
        loop.call_soon_threadsafe(future.cancel)


def _answer(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    # A closed loop (RuntimeError) has nobody waiting for this answer.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the request was cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
