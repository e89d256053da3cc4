"""tokens: bearer tokens of the HTTP API (create, list, revoke)."""

from __future__ import annotations

from datetime import timedelta

import click

from syncd.cli.app import App, json_option, pass_app, print_json
from syncd.cli.output import Output, output_options
from syncd.cli.params import PERIOD, rep_address
from syncd.cli.present.tokens import TOKENS, token_json
from syncd.store import api_tokens as store


@click.group()
def tokens() -> None:
    """Bearer tokens of the HTTP API: create, list, revoke."""


@tokens.command("create")
@click.argument("name")
@click.option(
    "--scope",
    type=click.Choice(store.SCOPES),
    required=True,
    help="read: every GET; write: also logged records and tasks; admin: also customers, "
    "contacts, reconciliation, ignore, forget.",
)
@click.option("--rep", metavar="EMAIL", help="The token sees only this rep's records and tasks.")
@click.option("--expires", type=PERIOD, metavar="PERIOD", help="Expire after this long (90d).")
@json_option
@pass_app
def create(
    app: App, name: str, scope: str, rep: str | None, expires: timedelta | None, as_json: bool
) -> None:
    """Make a token and print it once: only its hash is stored."""
    with app.engine.begin() as conn:
        secret, row = store.create(
            conn, name, scope=scope, rep=rep_address(rep) if rep else None, expires_in=expires
        )
    shown = token_json(row)
    if as_json:
        print_json(
            {
                "name": shown["name"],
                "token": secret,
                "scope": shown["scope"],
                "rep": shown["rep"],
                "expires_at": shown["expires_at"],
            }
        )
        return
    click.echo(secret)
    click.echo(
        f"token {name!r} ({scope}{', rep ' + shown['rep'] if shown['rep'] else ''}, "
        f"expires {shown['expires_at'] or 'never'}): shown once, store it now",
        err=True,
    )


@tokens.command("list")
@output_options
@pass_app
def list_cmd(app: App, output: Output) -> None:
    """Every token with its scope, rep, expiry and last use (never the token itself)."""
    with app.engine.connect() as conn:
        rows = store.listed(conn)
    output.emit(rows, TOKENS, app.out)


@tokens.command("revoke")
@click.argument("name")
@pass_app
def revoke(app: App, name: str) -> None:
    """Revoke a token: the next request with it is refused (401)."""
    with app.engine.begin() as conn:
        live = store.revoke(conn, name)
    click.echo(f"token {name!r}: {'revoked' if live else 'was already revoked'}")
