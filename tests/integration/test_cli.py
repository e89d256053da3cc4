"""The command line: help and docs for every command, errors without tracebacks, no secrets."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from syncd.cli.main import cli
from tests.conftest import World
from tests.mail import make_message
from tests.servers.radicale import Radicale
from tests.servers.sample import CUSTOMERS_CSV

README = Path(__file__).resolve().parents[2] / "README.md"


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    # Through list_commands/get_command: the top-level commands are imported on demand.
    out: list[tuple[str, click.Command]] = []
    with click.Context(group) as ctx:  # closed: what loading a command froze is unfrozen
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None, name
            full = f"{prefix}{name}"
            out.append((full, command))
            if isinstance(command, click.Group):
                out.extend(_commands(command, full + " "))
    return out


@pytest.mark.parametrize(("name", "command"), _commands(cli), ids=[n for n, _ in _commands(cli)])
def test_every_command_has_help_and_a_readme_entry(name: str, command: click.Command) -> None:
    assert command.help, f"syncd {name} has no help text"
    result = CliRunner().invoke(cli, [*name.split(), "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output
    commands_section = README.read_text().split("### Commands")[1].split("\n### ")[0]
    assert f"syncd {name}" in commands_section, f"README.md Commands lacks `syncd {name}`"


def test_config_errors_are_listed_without_traceback(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(cli, ["--config", str(tmp_path / "nope.toml"), "status"])
    assert (
        missing.exit_code == 2
        and "no such file" in missing.stderr
        and "syncd init" in missing.stderr
    )
    bad = tmp_path / "bad.toml"
    bad.write_text('[[mailbox]]\nname = "a"\nhost = "x"\npasword = "typo"\n')
    result = runner.invoke(cli, ["--config", str(bad), "status"])
    assert result.exit_code == 2
    assert "mailbox[0].owner: Field required" in result.stderr
    assert "mailbox[0].pasword: unknown key" in result.stderr
    assert "Traceback" not in result.output


def test_init_writes_a_valid_example_once(tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "syncd.toml"
    assert runner.invoke(cli, ["--config", str(path), "init"]).exit_code == 0
    assert "[[mailbox]]" in path.read_text()
    again = runner.invoke(cli, ["--config", str(path), "init"])
    assert again.exit_code == 2 and "--force" in again.stderr


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "syncd.toml"
    path.write_text('[database]\nurl = "postgresql+psycopg://nobody@127.0.0.1:1/none"\n')
    result = CliRunner().invoke(cli, ["--config", str(path), "customers", "list"])
    assert result.exit_code == 1 and "error: cannot open or migrate the database" in result.stderr
    assert "Traceback" not in result.output


def test_db_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "syncd.toml"
    path.write_text('[database]\nurl = "sqlite:///syncd.db"\n')
    first = CliRunner().invoke(cli, ["--config", str(path), "db", "upgrade"])
    assert first.exit_code == 0 and "(was empty)" in first.output
    assert "(was" not in CliRunner().invoke(cli, ["--config", str(path), "db", "upgrade"]).output


@pytest.mark.dovecot
def test_passwords_never_leak(
    world: World,
    radicale: Radicale,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    world.rep("alice")
    world.rep("bob")
    world.rep("carol")
    calendar_login = world.cal_rep("alice", radicale)
    radicale.seed(
        calendar_login,
        "work",
        {
            "m.ics": "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:m1\r\n"
            f"DTSTAMP:20240101T000000Z\r\nDTSTART:{datetime.now(UTC) + timedelta(days=2):%Y%m%dT090000Z}\r\n"
            "SUMMARY:x\r\n"
            "ATTENDEE:mailto:wile@acme.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
        },
    )
    monkeypatch.setenv("BOB_IMAP_PASSWORD", world.passwords["bob"])
    world.write_config(
        mailbox={
            "bob": {"password_file": None, "password_env": "BOB_IMAP_PASSWORD"},
            "carol": {
                "password_file": None,
                "password_command": f"{sys.executable} -c \"print('{world.passwords['carol']}x')\"",
            },
        }
    )
    world.customers(CUSTOMERS_CSV)
    for rep in ("alice", "bob", "carol"):
        world.deliver(rep, make_message(message_id=f"<{rep}@acme.com>"))
    outputs = [
        world.cli("-vv", "sync", expect=1),
        world.cli("check", expect=1),
        world.cli("status", expect=3),
        world.cli("status", "--json", expect=3),
        world.cli("records", "list", "--json"),
    ]
    assert "bob: 1 captured" in outputs[0].stdout and "alice: 1 captured" in outputs[0].stdout
    assert "carol: FAILED" in outputs[0].stdout  # the command printed a wrong password
    assert "alice-cal: 1 meetings new" in outputs[0].stdout
    engine = create_engine(world.db_url)
    with engine.connect() as conn:
        dump = json.dumps(
            [
                [list(map(str, row)) for row in conn.execute(text(f"SELECT * FROM {table}"))]
                for table in (
                    "records",
                    "participants",
                    "folder_cursors",
                    "source_states",
                    "quarantine",
                )
            ]
        )
    engine.dispose()
    captured = capfd.readouterr()
    everything = dump + captured.out + captured.err + "".join(o.output for o in outputs)
    for password in [*world.passwords.values(), radicale.users[calendar_login]]:
        assert password not in everything
    assert "Authorization" not in everything
