"""init: write the example configuration."""

from __future__ import annotations

import click

from syncd.cli.app import App, pass_app
from syncd.errors import UserError


@click.command()
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@pass_app
def init(app: App, force: bool) -> None:
    """Write a commented example configuration to the --config path."""
    path = app.config_path
    if path.exists() and not force:
        raise UserError(
            f"{path} exists", hint="pass --force to overwrite it, or --config another path"
        )
    import tomllib

    from syncd.cli.example_config import EXAMPLE
    from syncd.config_file import parse_config

    parse_config(tomllib.loads(EXAMPLE))  # the example must always be valid
    path.write_text(EXAMPLE, encoding="utf-8")
    click.echo(f"wrote {path}; edit it, then run: syncd check")
