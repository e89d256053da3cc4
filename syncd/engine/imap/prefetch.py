"""Read ahead on a thread of its own: the next batch's FETCH runs while this one is parsed
and saved (issue #20).  Waiting on the socket releases the GIL, so the two overlap on two
cores; parsing and saving stay on the caller's thread, in order, as before.

Bounded: at most ``depth`` items wait (plus the one being produced), so memory stays a
few batches whatever the folder's size.  An error of the producer is raised by the
consumer's next ``next()``, where the sequential loop would have raised it.  ``close()``
(also on leaving a ``with`` block early: a stop, a failed save) tells the producer to stop
after the item in hand and waits for it, so that nobody uses the session after it.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")

_END = object()


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class Prefetched(Generic[T]):
    def __init__(self, items: Iterable[T], *, depth: int = 1, name: str = "prefetch") -> None:
        self._items = items
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        context = contextvars.copy_context()  # the log context (mailbox, folder) goes along
        self._thread = threading.Thread(
            target=context.run, args=(self._produce,), name=name, daemon=True
        )
        self._started = False
        self._done = False

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
        except BaseException as err:  # handed to the consumer, raised there
            self._put(_Failed(err))
            return
        self._put(_END)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        if not self._started:
            self._started = True
            self._thread.start()
        while not self._done:
            item = self._queue.get()
            if item is _END:
                self._done = True
                return
            if isinstance(item, _Failed):
                self._done = True
                raise item.error
            yield item  # type: ignore[misc]

    def close(self) -> None:
        """Stop the producer after the item in hand and wait for it."""
        self._stop.set()
        self._done = True
        if self._started:
            self._thread.join()

    def __enter__(self) -> Prefetched[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
