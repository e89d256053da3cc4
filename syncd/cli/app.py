"""What every command shares: the config, the database, output helpers, error handling."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from syncd.config import Config, load_config, resolve_path
from syncd.errors import StoreError, SyncdError, UserError
from syncd.store.database import open_database

F = TypeVar("F", bound=Callable[..., Any])


class App:
    def __init__(self, config_path: str | None) -> None:
        self.config_path: Path = resolve_path(config_path)

    @cached_property
    def config(self) -> Config:
        return load_config(self.config_path)

    @cached_property
    def engine(self) -> Engine:
        return open_database(self.config.database.url)

    @cached_property
    def out(self) -> Console:
        return Console(soft_wrap=True, highlight=False)


pass_app = click.make_pass_decorator(App)


def json_option(func: F) -> F:
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
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class ErrorHandlingGroup(click.Group):
    """The one place that turns errors into a message, a hint and an exit code: no tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SyncdError as err:
            raise _fail(err) from None
        except OperationalError as err:
            raise _fail(
                StoreError(
                    f"database error: {str(err.orig).strip()}",
                    hint="check database.url and that the database is reachable",
                )
            ) from None
        except SQLAlchemyError as err:
            first_line = f"{type(err).__name__}: {err}".splitlines()[0]
            raise _fail(StoreError(f"database error: {first_line}")) from None


def _fail(err: SyncdError) -> click.exceptions.Exit:
    click.echo(f"error: {err.message}", err=True)
    if err.hint:
        click.echo(f"hint: {err.hint}", err=True)
    return click.exceptions.Exit(err.exit_code)
