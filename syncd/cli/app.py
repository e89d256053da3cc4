"""What every command shares: the config, the database, output helpers, error handling.

Imported by ``syncd --help``, so it stays light: the config, the database
(SQLAlchemy) and rich are imported when a command first asks for them.
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from syncd.errors import StoreError, SyncdError, UserError

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy import Engine

    from syncd.config import Config
    from syncd.group_tokens import TokenCaches

F = TypeVar("F", bound=Callable[..., Any])

# Columns of a table printed into a pipe or a file: as wide as its cells need.
UNWRAPPED_WIDTH = 4000


@contextmanager
def loading() -> Iterator[None]:
    """Pause the cyclic garbage collector while a command loads, then freeze what loaded
    out of its sight until the command ends (``unfreeze_when_done``).

    A command's modules (SQLAlchemy, the engine) and its validated configuration
    are a hundred thousand objects that live as long as the command: the collector would
    traverse them some 150 times while they load (a tenth of the CPU of `syncd sync` of an
    unchanged mailbox), and the daemon's every full collection would traverse them again.
    Collecting before the freeze would cost as much as it saves, so the few cycles loading
    leaves unreachable wait for the end of the command; its own work is collected as before.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def unfreeze_when_done(ctx: click.Context) -> None:
    """Hand what ``loading`` froze back to the collector when the command ends: in a process
    that runs several commands (the tests), nothing stays frozen past its command."""
    ctx.call_on_close(gc.unfreeze)


class App:
    def __init__(self, config_path: str | None) -> None:
        with loading():
            from syncd.config_file import resolve_path

        self.config_path: Path = resolve_path(config_path)

    @cached_property
    def config(self) -> Config:
        from syncd.config_file import load_config

        with loading():
            return load_config(self.config_path)

    @cached_property
    def engine(self) -> Engine:
        from syncd.store.database import open_database

        engine = open_database(self.config.database.url)
        if self.config.mailbox_group:
            from syncd.group_tokens import uses_refresh_tokens

            if uses_refresh_tokens(self.config):  # rotated ones are kept in the database
                self.tokens.keep_rotated_in(engine)
        return engine

    def close(self) -> None:
        """At the command's end: its database connections closed, not left to the collector
        (a process that runs many commands, the tests', would hold one pool per command)."""
        engine = self.__dict__.get("engine")
        if engine is not None:
            engine.dispose()

    @cached_property
    def tokens(self) -> TokenCaches:
        """The mailbox groups' token caches of this command, handed to what logs in."""
        from syncd.group_tokens import TokenCaches

        return TokenCaches()

    @cached_property
    def out(self) -> Console:
        return console()


def console() -> Console:
    """Where tables for people go.  On a terminal they fit its width; into a pipe or a file
    (``| less``, ``> report.txt``, a cron mail) nothing wraps, where Rich would lay them out
    in 80 columns, or in ``$COLUMNS`` that shells and CI runners export, and break words
    ("globe/x.co./uk")."""
    from rich.console import Console

    out = Console(soft_wrap=True, highlight=False)
    if not out.is_terminal:
        out.width = UNWRAPPED_WIDTH
    return out


pass_app = click.make_pass_decorator(App)


def json_option(func: F) -> F:
    """``--json`` for a command whose output is one object (status, verify, records explain);
    list commands take ``output_options`` (syncd/cli/output.py) instead."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        func
    )


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def parse_day(value: str | None) -> datetime | None:
    """A date or datetime given on the command line, as aware UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(value), datetime.min.time())
        except ValueError:
            raise UserError(
                f"{value!r} is not a date", hint="use YYYY-MM-DD or an ISO 8601 time"
            ) from None
    try:
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first UTC instant
        raise UserError(
            f"{value!r} is out of range", hint="use a date between the years 1 and 9999"
        ) from None


class ErrorHandlingGroup(click.Group):
    """The one place that turns errors into a message, a hint and an exit code: no tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SyncdError as err:
            raise _fail(err) from None
        except Exception as err:
            store_error = _database_error(err)
            if store_error is None:
                raise
            raise _fail(store_error) from None


def _database_error(err: Exception) -> StoreError | None:
    """A SQLAlchemy error as a StoreError; None for anything else.  SQLAlchemy is only
    looked up when it is loaded: a command that never opened the database cannot raise it."""
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is None or not isinstance(err, sa_exc.SQLAlchemyError):
        return None
    if isinstance(err, sa_exc.OperationalError):
        return StoreError(
            f"database error: {str(err.orig).strip()}",
            hint="check database.url and that the database is reachable",
        )
    first_line = f"{type(err).__name__}: {err}".splitlines()[0]
    return StoreError(f"database error: {first_line}")


def _fail(err: SyncdError) -> click.exceptions.Exit:
    from syncd.cli.present.hints import hint_for

    click.echo(f"error: {err.message}", err=True)
    hint = hint_for(err)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    return click.exceptions.Exit(err.exit_code)
