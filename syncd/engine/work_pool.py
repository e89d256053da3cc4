"""The daemon's bounded pool of worker threads, and the work in flight on it: syncs,
verifies, the follow-up rules.  A stop waits for that work within its deadline and then
leaves it (``busy``: a sync stuck on the network past it).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class WorkPool:
    def __init__(self, workers: int) -> None:
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="sync")
        # The work in flight, with its arguments; each leaves when done.
        self._futures: dict[Future[None], tuple[Any, ...]] = {}

    def submit(self, job: Callable[..., None], *args: Any) -> Future[None]:
        future = self._executor.submit(job, *args)
        self._futures[future] = args
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future[None]) -> None:
        self._futures.pop(future, None)

    def shutdown(self) -> list[tuple[Any, ...]]:
        """Nothing new starts; what is queued is dropped: the arguments of each job dropped
        (a sync dropped is not running, and its lease need not wait for it)."""
        submitted = dict(self._futures)
        self._executor.shutdown(wait=False, cancel_futures=True)
        return [args for future, args in submitted.items() if future.cancelled()]

    def wait(self, deadline: float) -> None:
        """Wait for the work in flight until ``deadline`` (time.monotonic())."""
        for future in list(self._futures):
            # A worker reports its own failures; here we only wait for it.
            with contextlib.suppress(Exception):
                future.result(timeout=max(0.0, deadline - time.monotonic()))

    def busy(self) -> bool:
        return any(not f.done() for f in self._futures)
