"""Whether this process is capturing a backlog now, so that work which can wait yields to it.

A webhook delivery costs about half a millisecond of CPU (HTTP, signing, its outcome's row);
in the capture process, under the GIL, a backfill's thousands of deliveries come straight out
of its capture speed.  While a folder with more than one batch to read is being captured,
the deliverer trickles (engine -> webhooks/deliverer.py) and catches up once it is done; a
single new message is no backlog, so its event still goes at once.  One counter per process,
as the GIL it answers to is one per process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_capturing = 0


@contextmanager
def capturing_backlog() -> Iterator[None]:
    global _capturing
    with _lock:
        _capturing += 1
    try:
        yield
    finally:
        with _lock:
            _capturing -= 1


def busy() -> bool:
    return _capturing > 0
