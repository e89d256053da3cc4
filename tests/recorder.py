"""A stand-in for a module's structlog logger, for tests that assert on log events.

structlog caches a logger on first use, so ``structlog.testing.capture_logs`` misses events
once another test has configured logging; replacing the module's ``log`` does not."""

from __future__ import annotations

from collections.abc import Callable


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, object]]] = []  # (level, event, fields)

    def __getattr__(self, level: str) -> Callable[..., None]:
        return lambda event, **fields: self.events.append((level, event, fields))
