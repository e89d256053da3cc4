"""Logging: structlog, readable on a terminal, JSON lines otherwise.

Standard-library logging (imapclient, SQLAlchemy, alembic) goes through the same
renderer, so IT reads one format.  Secrets never reach a log call: the code logs
names and counts, never credentials or message bodies.

structlog (with the rich tracebacks it loads) costs a tenth of a second to import, more
than a short command like ``syncd status`` takes in all.  So ``configure`` sets up
structlog at once only when structlog is already loaded (the command's modules log
through it); otherwise the standard-library handler builds the same renderer on the
first record it formats, and a command that logs nothing never imports structlog.
Modules log through ``get_logger``, which imports structlog at the first line that would
be written: a one-shot command such as ``syncd sync`` of an unchanged mailbox writes none.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

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
        return self.realize().format(record)

    def realize(self) -> logging.Formatter:
        if self._real is None:
            self._real = _structlog_formatter(self._json, keep_configured=True)
        return self._real


def get_logger(name: str) -> Logger:
    """The structlog logger ``name``, imported and configured when it first has a line to write."""
    return Logger(name)


class Logger:
    """Stands in for ``structlog.get_logger(name)`` until a line is worth writing.

    While ``configure(lazy=True)`` defers structlog, a line below the level is dropped here:
    structlog would hand it to the standard-library logger, which drops it too.  Any other
    line imports structlog, configures it (the deferred formatter's work, done first so the
    line is not written by an unconfigured structlog) and goes through structlog's logger.
    """

    __slots__ = ("_name", "_real")

    def __init__(self, name: str) -> None:
        self._name = name
        self._real: Any = None

    def debug(self, event: str, *args: Any, **fields: Any) -> None:
        self._log(logging.DEBUG, "debug", event, args, fields)

    def info(self, event: str, *args: Any, **fields: Any) -> None:
        self._log(logging.INFO, "info", event, args, fields)

    def warning(self, event: str, *args: Any, **fields: Any) -> None:
        self._log(logging.WARNING, "warning", event, args, fields)

    def error(self, event: str, *args: Any, **fields: Any) -> None:
        self._log(logging.ERROR, "error", event, args, fields)

    def exception(self, event: str, *args: Any, **fields: Any) -> None:
        self._log(logging.ERROR, "exception", event, args, fields)

    def critical(self, event: str, *args: Any, **fields: Any) -> None:
        self._log(logging.CRITICAL, "critical", event, args, fields)

    def _log(
        self, level: int, method: str, event: str, args: tuple[Any, ...], fields: dict[str, Any]
    ) -> None:
        if self._real is None:
            deferred = _deferred_formatters()
            # Once structlog is loaded (a test's capture_logs, another module), every line
            # goes through it, as structlog's own loggers would send it.
            if (
                deferred
                and "structlog" not in sys.modules
                and not logging.getLogger(self._name).isEnabledFor(level)
            ):
                return
            import structlog

            for formatter in deferred:
                formatter.realize()
            self._real = structlog.get_logger(self._name)
        getattr(self._real, method)(event, *args, **fields)


def _deferred_formatters() -> list[_DeferredFormatter]:
    return [
        handler.formatter
        for handler in logging.getLogger().handlers
        if isinstance(handler.formatter, _DeferredFormatter)
    ]


def _shared() -> list[structlog.typing.Processor]:
    import structlog

    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _structlog_formatter(json: bool, *, keep_configured: bool = False) -> logging.Formatter:
    """Configure structlog's own loggers and return the formatter for standard-library ones.

    With ``keep_configured`` (a deferred formatter's first record), a structlog configured
    since ``configure`` ran is left as it is: that is a test's ``capture_logs``, which must
    keep seeing every line."""
    import structlog

    shared = _shared()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    if not (keep_configured and structlog.is_configured()):
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
