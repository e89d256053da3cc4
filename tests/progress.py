"""A line naming each test that runs long, while it runs.

The suite's slowest tests take a minute or more, and pytest prints nothing until a test ends
(with xdist: until a worker reports it), so a newcomer watched a silent terminal.  After
``FIRST`` seconds a running test is named, and again every ``AGAIN`` seconds it still runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

FIRST = 15.0
AGAIN = 60.0


class LongTestNotices:
    def __init__(self, write: Callable[[str], object]) -> None:
        self._write = write
        self._due: dict[str, tuple[float, float]] = {}  # test: (started, next notice)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="long-test-notices", daemon=True)

    def started(self, nodeid: str, now: float) -> None:
        with self._lock:
            self._due[nodeid] = (now, now + FIRST)

    def finished(self, nodeid: str) -> None:
        with self._lock:
            self._due.pop(nodeid, None)

    def due(self, now: float) -> list[str]:
        """The notices to print at ``now``: each running test past its next notice."""
        lines = []
        with self._lock:
            for nodeid, (started, notice) in sorted(self._due.items()):
                if now >= notice:
                    lines.append(f"still running after {now - started:.0f} s: {nodeid}")
                    self._due[nodeid] = (started, notice + AGAIN)
        return lines

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    # --- as a pytest plugin ------------------------------------------------------------------

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.started(nodeid, time.monotonic())

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        self.finished(nodeid)

    def pytest_unconfigure(self) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for line in self.due(time.monotonic()):
                self._write(line)
