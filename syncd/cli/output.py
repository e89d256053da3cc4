"""One set of output options for every list command: a table for people, ``--json`` (one
array) and ``--nl`` (one JSON object a line, for streams and ``jq -c``).

A command builds its items, then hands them to ``Output.emit`` with the resource's
``View``: the same objects go out as an array or line by line, and only the view for
people differs per resource.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import click

from syncd.cli.app import console, print_json

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")
R = TypeVar("R")
Mode = Literal["table", "json", "nl"]


@dataclass(frozen=True)
class View(Generic[T]):
    """How one resource is shown: ``as_json`` gives an item's JSON object (the shape the
    README documents), ``show`` prints the items for people."""

    as_json: Callable[[T], dict[str, Any]]
    show: Callable[[Console, list[T]], None]


@dataclass(frozen=True)
class Output:
    mode: Mode

    def emit(self, items: Iterable[T], view: View[T], out: Console | None = None) -> None:
        if self.mode == "json":
            print_json([view.as_json(item) for item in items])
        elif self.mode == "nl":
            for item in items:
                click.echo(json.dumps(view.as_json(item), ensure_ascii=False, default=str))
        else:
            view.show(out or console(), list(items))


def output_options(func: Callable[..., R]) -> Callable[..., R]:
    """``--json`` and ``--nl``; the command receives ``output: Output``."""

    @click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
    @click.option(
        "--nl", "as_nl", is_flag=True, help="Print newline-delimited JSON: one object a line."
    )
    @functools.wraps(func)
    def wrapper(*args: Any, as_json: bool, as_nl: bool, **kwargs: Any) -> R:
        if as_json and as_nl:
            raise click.UsageError("--json and --nl exclude each other")
        mode: Mode = "json" if as_json else "nl" if as_nl else "table"
        return func(*args, output=Output(mode), **kwargs)

    return wrapper
