"""records add, edit, delete, import: calls, visits and notes people log (syncd/store/logged_records.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from syncd.cli.app import App, json_option, parse_day, pass_app, print_json
from syncd.cli.present.records import RECORDS
from syncd.domain.logged import (
    KINDS,
    OUTCOMES,
    TAKES_DURATION,
    TAKES_LOCATION,
    TAKES_OUTCOME,
    BadDraft,
    LoggedDraft,
    RawFields,
    draft_from,
)
from syncd.errors import UserError
from syncd.store import logged_records as store
from syncd.store.audit import current_actor
from syncd.store.directory import active_customer, load_directory

F = TypeVar("F", bound=Callable[..., Any])


def _fields(*, required: bool) -> Callable[[F], F]:
    """The options of ``add`` (``required``) and ``edit`` (each one optional)."""

    def wrap(func: F) -> F:
        options = [
            click.option("--kind", type=click.Choice(KINDS), required=required,
                         help="call, visit or note."),
            click.option("--owner", metavar="EMAIL", required=required,
                         help="The rep who made the call or visit or wrote the note."),
            click.option("--customer", "customer_ref", metavar="NAME|ID",
                         help="Link this customer (kept as a manual link)."),
            click.option("--contact", "contacts", multiple=True, metavar="EMAIL",
                         help="A person spoken to (repeatable); linked to their customer as for "
                         "mail."),
            click.option("--at", "at", metavar="DATETIME",
                         help="When it happened (ISO 8601, UTC unless it has an offset; "
                         "default: now)."),
            click.option("--duration", metavar="LENGTH", help="Calls and visits: 15m, 1h, 90s."),
            click.option("--direction", type=click.Choice(["in", "out"]),
                         help="Calls and visits: who reached out (default out)."),
            click.option("--outcome", type=click.Choice(OUTCOMES), help="Calls only."),
            click.option("--location", help="Visits only."),
            click.option("--subject", required=required, help="What it was about."),
            click.option("--body", help="Notes, the summary of the conversation."),
            click.option("--external-id", metavar="ID",
                         help="Its id in the system it came from (one record per id)."),
        ]  # fmt: skip
        for option in reversed(options):
            func = option(func)
        return func

    return wrap


def _show(app: App, record_id: int, as_json: bool) -> None:
    with app.engine.connect() as conn:
        obj = store.record_object(conn, record_id)
    if as_json:
        print_json(obj)
    else:
        from syncd.store.queries import records_by_id

        with app.engine.connect() as conn:
            RECORDS.show(app.out, records_by_id(conn, [record_id]))


def _draft(raw: RawFields, customer_ids: tuple[int, ...], origin: str) -> LoggedDraft:
    try:
        return draft_from(raw, customer_ids=customer_ids, origin=origin)
    except BadDraft as err:
        raise UserError("; ".join(err.problems), hint="see `syncd records add --help`") from None


def _at(value: str | None) -> datetime:
    return parse_day(value) or datetime.now(UTC)


@click.command("add")
@_fields(required=True)
@json_option
@pass_app
def records_add(
    app: App, kind: str, owner: str, customer_ref: str | None, contacts: tuple[str, ...],
    at: str | None, duration: str | None, direction: str | None, outcome: str | None,
    location: str | None, subject: str, body: str | None, external_id: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Log a call, visit or note with a customer or contacts."""
    raw = RawFields(
        kind=kind, owner=owner, subject=subject, occurred_at=_at(at), contacts=contacts,
        direction=direction, body=body, duration=duration, outcome=outcome, location=location,
        external_id=external_id, has_customer=customer_ref is not None,
    )  # fmt: skip
    with app.engine.begin() as conn:
        ids = (active_customer(conn, customer_ref).id,) if customer_ref else ()
        record_id = store.add(
            conn, _draft(raw, ids, "cli"), actor=current_actor(),
            directory=load_directory(conn, app.config.capture),
            internal_domains=app.config.internal_domains,
        )  # fmt: skip
    _show(app, record_id, as_json)


@click.command("edit")
@click.argument("record_id", type=int, metavar="ID")
@_fields(required=False)
@json_option
@pass_app
def records_edit(
    app: App, record_id: int, kind: str | None, owner: str | None, customer_ref: str | None,
    contacts: tuple[str, ...], at: str | None, duration: str | None, direction: str | None,
    outcome: str | None, location: str | None, subject: str | None, body: str | None,
    external_id: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Change a logged call, visit or note (captured emails and meetings belong to their
    mailbox or calendar).  An option given replaces that value; --contact replaces every
    contact and --customer the manual link."""
    with app.engine.begin() as conn:
        before = store.draft_of(conn, record_id)
        new_kind = kind or before.kind

        def kept(given: str | None, value: Any, takes: tuple[str, ...]) -> str | None:
            """The value given, else the stored one while the kind still takes it."""
            if given is not None:
                return given
            return None if value is None or new_kind not in takes else str(value)

        stored_direction = {"inbound": "in", "outbound": "out"}.get(before.direction)
        raw = RawFields(
            kind=new_kind,
            owner=owner or before.owner,
            subject=subject if subject is not None else before.subject,
            occurred_at=parse_day(at) or before.occurred_at,
            contacts=contacts or before.contacts,
            direction=kept(direction, stored_direction, TAKES_DURATION),
            body=body if body is not None else before.body,
            duration=kept(duration, before.duration_seconds, TAKES_DURATION),
            outcome=kept(outcome, before.outcome, TAKES_OUTCOME),
            location=kept(location, before.location, TAKES_LOCATION),
            external_id=external_id if external_id is not None else before.external_id,
            has_customer=bool(customer_ref or before.customer_ids),
        )
        ids = (active_customer(conn, customer_ref).id,) if customer_ref else before.customer_ids
        changed = store.edit(
            conn, record_id, _draft(raw, ids, before.origin), actor=current_actor(),
            directory=load_directory(conn, app.config.capture),
            internal_domains=app.config.internal_domains,
        )  # fmt: skip
    if not as_json:
        click.echo(
            f"record {record_id}: " + (f"changed {', '.join(changed)}" if changed else "unchanged")
        )
    _show(app, record_id, as_json)


@click.command("delete")
@click.argument("record_id", type=int, metavar="ID")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def records_delete(app: App, record_id: int, yes: bool) -> None:
    """Delete a logged call, visit or note (never a captured email or meeting)."""
    with app.engine.connect() as conn:
        draft = store.draft_of(conn, record_id)  # refuses a captured record before asking
    if not yes:
        click.confirm(f"Delete {draft.kind} {record_id} ({draft.subject[:60]})?", abort=True)
    with app.engine.begin() as conn:
        kind = store.delete_record(conn, record_id, actor=current_actor())
    click.echo(f"record {record_id}: {kind} deleted")


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Say what the import would change; change nothing.")
@json_option
@pass_app
def records_import(app: App, file: Path, dry_run: bool, as_json: bool) -> None:
    """Import calls, visits and notes from a CSV file.

    Header: kind,occurred_at,owner,customer,contact_email,direction,duration_seconds,
    outcome,location,subject,body,external_id (contact_email: addresses separated by ";").
    Re-importing the same file changes nothing (rows are known by external_id, else by
    their content).  A file with bad rows imports nothing and lists every bad row.
    """
    from syncd.domain.logged_file import parse_records_file, utf8_text
    from syncd.engine.directory_sync import read_file

    parsed = parse_records_file(utf8_text(read_file(file), str(file)), str(file))
    with app.engine.begin() as conn:
        done = store.import_rows(
            conn, parsed, actor=current_actor(),
            directory=load_directory(conn, app.config.capture),
            internal_domains=app.config.internal_domains, dry_run=dry_run,
        )  # fmt: skip
    if as_json:
        print_json({"dry_run": dry_run, "rows": done.rows, **done.counts})
        return
    click.echo(
        ", ".join(f"{n} {what}" for what, n in done.counts.items()) + f" of {done.rows} row(s)"
    )
    if dry_run:
        click.echo("dry run: nothing was changed")


__all__ = ["records_add", "records_delete", "records_edit", "records_import"]
