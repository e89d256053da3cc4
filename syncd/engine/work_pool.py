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
        self._futures: set[Future[None]] = set()

    def submit(self, job: Callable[..., None], *args: Any) -> Future[None]:
        future = self._executor.submit(job, *args)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        return future

    def shutdown(self) -> None:
        """Nothing new starts; what is queued is dropped."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def wait(self, deadline: float) -> None:
        """Wait for the work in flight until ``deadline`` (time.monotonic())."""
        for future in list(self._futures):
            # A worker reports its own failures; here we only wait for it.
            with contextlib.suppress(Exception):
                future.result(timeout=max(0.0, deadline - time.monotonic()))

    def busy(self) -> bool:
        return any(not f.done() for f in self._futures)
