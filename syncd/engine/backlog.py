"""Whether this process is capturing a backlog now, so that work which can wait yields to it.

A webhook delivery costs about half a millisecond of CPU (HTTP, signing, its outcome's row);
in the capture process, under the GIL, a backfill's thousands of deliveries come straight out
of its capture speed.  While a folder with more than one batch to read is being captured,
the deliverer trickles (engine -> webhooks/deliverer.py) and catches up once it is done; a
single new message is no backlog, so its event still goes at once.  The daemon makes one
``Backlog`` and hands it to the mail capture and to the deliverer (the GIL it answers to is
one per process); a one-shot command that delivers after its capture needs none.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Backlog:
    """How many backlogs are being captured now, by the capture threads that share it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._capturing = 0

    @contextmanager
    def capturing(self) -> Iterator[None]:
        with self._lock:
            self._capturing += 1
        try:
            yield
        finally:
            with self._lock:
                self._capturing -= 1

    def busy(self) -> bool:
        return self._capturing > 0
