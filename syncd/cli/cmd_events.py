"""events: the feed of changes to records and tasks, for pull consumers and people."""

from __future__ import annotations

import json
import signal
import sys
import threading
from types import FrameType

import click

from syncd.cli.app import App, pass_app
from syncd.cli.output import Output, output_options
from syncd.store.events import TYPES

POLL_SECONDS = 0.5


@click.group()
def events() -> None:
    """The event feed: every change to a record or task, oldest first."""


@events.command("list")
@click.option(
    "--after",
    type=click.IntRange(min=0),
    metavar="ID",
    help="Only events after this id.",
)
@click.option(
    "--type",
    "types",
    multiple=True,
    type=click.Choice(TYPES),
    help="Only this type (repeatable).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help="At most this many (default 1000; with --follow: stop after this many).",
)
@click.option(
    "--follow",
    is_flag=True,
    help="Keep printing new events until interrupted (with --nl: one JSON object a line).",
)
@output_options
@pass_app
def list_cmd(
    app: App,
    after: int | None,
    types: tuple[str, ...],
    limit: int | None,
    follow: bool,
    output: Output,
) -> None:
    """Events oldest first; page with --after (the last id you read)."""
    from syncd.cli.present.events import EVENTS
    from syncd.store import events as store

    if not follow:
        with app.engine.connect() as conn:
            rows = store.read(conn, after=after or 0, types=types, limit=limit or 1000)
        output.emit(rows, EVENTS, app.out)
        return
    if output.mode == "json":
        raise click.UsageError("--follow streams: use --nl (or no option, for people)")
    _follow(app, after, types, limit, nl=output.mode == "nl")


def _follow(
    app: App, after: int | None, types: tuple[str, ...], limit: int | None, *, nl: bool
) -> None:
    """Poll by id until SIGINT or SIGTERM (exit 0) or ``limit`` events.  Without --after,
    only events newer than the newest at start.  The signals only set a flag, looked at
    between polls: an interrupt never lands inside a database call."""
    from syncd.cli.present.events import line
    from syncd.store import events as store

    stopping = threading.Event()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    left = limit
    try:
        if after is None:
            with app.engine.connect() as conn:
                after = store.last_id(conn)
        while not stopping.is_set() and (left is None or left > 0):
            with app.engine.connect() as conn:
                batch = store.read(conn, after=after, types=types, limit=min(left or 1000, 1000))
            for event in batch:
                text = json.dumps(store.envelope(event), ensure_ascii=False) if nl else line(event)
                click.echo(text)
            sys.stdout.flush()
            if batch:
                after = batch[-1].id
                if left is not None:
                    left -= len(batch)
            else:
                stopping.wait(POLL_SECONDS)
    except BrokenPipeError:  # `| head`: the reader is gone, so are we
        sys.stderr.close()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
