"""Logging: structlog, readable on a terminal, JSON lines otherwise.

Standard-library logging (imapclient, SQLAlchemy, alembic) goes through the same
renderer, so IT reads one format.  Secrets never reach a log call: the code logs
names and counts, never credentials or message bodies.

structlog (with the rich tracebacks it loads) costs a tenth of a second to import, more
than a short command like ``syncd status`` takes in all.  So ``configure`` sets up
structlog at once only when structlog is already loaded (the command's modules log
through it); otherwise the standard-library handler builds the same renderer on the
first record it formats, and a command that logs nothing never imports structlog.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import structlog


def configure(level: str = "WARNING", *, json: bool | None = None, lazy: bool = False) -> None:
    """Route every log line to stderr at ``level``.  With ``lazy``, structlog is configured
    now only if it is already imported, else on the first standard-library record."""
    if json is None:
        json = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    if lazy and "structlog" not in sys.modules:
        handler.setFormatter(_DeferredFormatter(json))
    else:
        handler.setFormatter(_structlog_formatter(json))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # imapclient logs protocol lines at DEBUG; keep them out even when syncd is verbose.
    logging.getLogger("imapclient").setLevel(max(logging.INFO, root.level))


class _DeferredFormatter(logging.Formatter):
    """Stands in for the structlog formatter until a record needs formatting."""

    def __init__(self, json: bool) -> None:
        super().__init__()
        self._json = json
        self._real: logging.Formatter | None = None

    def format(self, record: logging.LogRecord) -> str:
        if self._real is None:
            self._real = _structlog_formatter(self._json)
        return self._real.format(record)


def _shared() -> list[structlog.typing.Processor]:
    import structlog

    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _structlog_formatter(json: bool) -> logging.Formatter:
    """Configure structlog's own loggers and return the formatter for standard-library ones."""
    import structlog

    shared = _shared()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
