"""db: schema migrations by hand."""

from __future__ import annotations

import click

from syncd.cli.app import App, pass_app


@click.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: App) -> None:
    """Apply pending schema migrations (syncd also does this at start)."""
    from syncd.store import database

    engine = database.make_engine(app.config.database.url)
    before = database.current_revision(engine)
    database.upgrade(engine)
    after = database.current_revision(engine)
    click.echo(f"schema at {after}" + ("" if before == after else f" (was {before or 'empty'})"))


@db.command("reindex")
@pass_app
def db_reindex(app: App) -> None:
    """Rebuild the search index of records from the records as stored."""
    from syncd.store import search_index

    with app.engine.begin() as conn:
        count = search_index.rebuild(conn)
    click.echo(f"search index rebuilt: {count} record(s)")
