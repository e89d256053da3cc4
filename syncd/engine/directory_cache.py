"""The customer directory as the daemon's syncs match against it, read at most every
``DIRECTORY_TTL`` and dropped at once when the [directory] source applied a change.

A load that began before a change was dropped read the old directory: it serves the sync
that asked, but it is not kept for the next ones.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine

from syncd.config import CaptureConfig
from syncd.domain.matching import Directory
from syncd.store.directory import load_directory

DIRECTORY_TTL = 30.0  # customers and contacts are re-read at most this often


class DirectoryCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cached: tuple[float, Directory] | None = None
        self._generation = 0  # changes dropped so far

    def drop(self) -> None:
        """The directory changed (a mirror applied, a reload): the next sync reads it anew."""
        with self._lock:
            self.cached = None
            self._generation += 1

    def current(self, engine: Engine, capture: CaptureConfig) -> Directory:
        with self._lock:
            cached, generation = self.cached, self._generation
        if cached is not None and time.monotonic() - cached[0] < DIRECTORY_TTL:
            return cached[1]
        with engine.connect() as conn:
            directory = load_directory(conn, capture)
        with self._lock:
            if generation == self._generation:
                self.cached = (time.monotonic(), directory)
        return directory
