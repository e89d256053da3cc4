"""Output options: every list command prints the same objects as one JSON array (--json)
and one object a line (--nl), through the real CLI on a real database with data."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from syncd.cli.main import cli
from tests.conftest import World
from tests.mail import make_message

pytestmark = [pytest.mark.dovecot, pytest.mark.radicale]

CUSTOMERS = """\
customer,domains,contact_name,contact_email
Acme Corp,acme.com,Wile Coyote,wile@acme.com
Shared One,shared.io,,
Shared Two,shared.io,,
"""

# Every command that prints a list; a test below keeps it equal to the commands taking --nl.
LIST_COMMANDS = [
    ("audit",),
    ("contacts", "list"),
    ("customers", "list"),
    ("events", "list"),
    ("ignore", "list"),
    ("reconcile", "list"),
    ("records", "list"),
    ("records", "search"),
    ("tasks", "list"),
    ("tokens", "list"),
]
# What a list command needs besides its output options to list something.
ARGUMENTS = {("records", "search"): ("acme",)}


def _walk(
    group: click.Group, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    found = []
    with click.Context(group) as ctx:  # closed: what loading a command froze is unfrozen
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None
            found.append(((*prefix, name), command))
            if isinstance(command, click.Group):
                found.extend(_walk(command, (*prefix, name)))
    return found


def test_the_list_commands_are_the_commands_with_output_options() -> None:
    with_nl = {
        path
        for path, command in _walk(cli)
        if {"--json", "--nl"} <= {opt for p in command.params for opt in p.opts}
    }
    assert with_nl == set(LIST_COMMANDS)


def test_the_readme_documents_the_output_options_of_every_list_command() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Commands")[1].split("\n### ")[0]
    for command in LIST_COMMANDS:
        usages = re.findall(rf"`syncd {' '.join(command)}(?: [^`]*)?`", section)
        assert any("--json\\|--nl" in usage for usage in usages), command
    assert "`--nl`" in section


def _fill(world: World, radicale: Any) -> None:
    """Records (mail and a meeting), tasks, a reconciliation queue, exclusions, audit."""
    world.rep("alice")
    login = world.cal_rep("alice", radicale)
    start = datetime.now(UTC) + timedelta(days=2)
    radicale.seed(
        login,
        "work",
        {
            "m.ics": "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:m1\r\n"
            f"DTSTAMP:20240101T000000Z\r\nDTSTART:{start:%Y%m%dT090000Z}\r\n"
            f"DTEND:{start:%Y%m%dT100000Z}\r\nSUMMARY:Kick-off «Ω»\r\n"
            "ATTENDEE:mailto:wile@acme.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
        },
    )
    world.write_config()
    world.customers(CUSTOMERS)
    recent = datetime.now(UTC) - timedelta(hours=2)
    world.deliver("alice", make_message(message_id="<q1@acme.com>", date=recent))
    world.deliver(
        "alice",
        make_message(sender="Sam <sam@startup.dev>", message_id="<s1@startup.dev>", date=recent),
    )
    world.deliver(
        "alice",
        make_message(sender="Pat <pat@shared.io>", message_id="<p1@shared.io>", date=recent),
    )
    world.cli("sync")
    world.cli(
        "tasks", "add", "--customer", "Acme Corp", "--owner", "alice@example.com",
        "--title", "Call back", "--due", "2031-01-02",
    )  # fmt: skip
    world.cli("ignore", "add", "@spam.example")
    world.cli("tokens", "create", "intranet", "--scope", "read")
    world.write_config(capture='exclude = ["@noise.example"]')


def test_json_and_nl_print_the_same_objects(world: World, radicale: Any) -> None:
    _fill(world, radicale)
    for listed in LIST_COMMANDS:
        command = (*listed, *ARGUMENTS.get(listed, ()))
        as_array = json.loads(world.cli(*command, "--json").stdout)
        lines = world.cli(*command, "--nl").stdout.splitlines()
        assert isinstance(as_array, list) and as_array, f"{command}: no data to compare"
        assert [json.loads(line) for line in lines] == as_array, command
        assert all(line.startswith("{") and "\n" not in line for line in lines)
        table = world.cli(*command).stdout
        assert table.strip() and not table.lstrip().startswith(("[", "{")), command
        clash = world.cli(*command, "--json", "--nl", expect=2)
        assert "--json and --nl exclude each other" in clash.output
    kinds = {r["kind"] for r in json.loads(world.cli("records", "list", "--json").stdout)}
    assert kinds == {"email", "meeting"}
    queue = json.loads(world.cli("reconcile", "list", "--json").stdout)
    assert {e["address"] for e in queue} >= {"sam@startup.dev", "pat@shared.io"}
    sources = {row["source"] for row in json.loads(world.cli("ignore", "list", "--json").stdout)}
    assert sources == {"config", "cli"}


def test_nl_keeps_non_ascii_on_one_line(world: World, radicale: Any) -> None:
    _fill(world, radicale)
    line = next(
        line
        for line in world.cli("records", "list", "--nl", "--kind", "meeting").stdout.splitlines()
    )
    assert "Kick-off «Ω»" in line
    meeting = json.loads(line)
    assert meeting["status"] == "scheduled"
    assert meeting["starts_at"].endswith("T09:00:00Z") and meeting["occurred_at"].endswith("Z")


def test_status_on_a_current_database_loads_no_migration_or_server_code(tmp_path: Path) -> None:
    """`syncd status` reads the database (through the driver when the schema is current) and nothing else heavy: alembic
    only when a migration is pending, no IMAP, CalDAV or iCalendar code, no structlog."""
    config = tmp_path / "syncd.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n\n'
        '[organization]\ninternal_domains = ["example.com"]\n'
    )
    probe = (
        "import json, sys\n"
        "from syncd.cli.main import cli\n"
        "code = cli.main(sys.argv[1:], prog_name='syncd', standalone_mode=False)\n"
        "heavy = ('alembic', 'caldav', 'icalendar', 'imapclient', 'structlog')\n"
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))\n"
    )

    def loaded(*args: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", probe, "--config", str(config), *args],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]

    assert loaded("customers", "list", "--json") == ["alembic"]  # a new database: migrated
    assert loaded("status", "--json") == []
    assert loaded("records", "list", "--nl") == []


def test_errors_the_store_raises_as_data_get_a_hint_naming_the_command(world: World) -> None:
    world.write_config()
    cases = [
        (("records", "explain", "999"), "error: no record 999", "`syncd records list` shows record ids"),
        (("records", "link", "999", "--customer", "1"), "error: no customer '1'", "`syncd customers add` creates one"),
        (("tasks", "done", "999"), "error: no task 999", "`syncd tasks list` shows the task ids"),
        (
            ("reconcile", "create-customer", "jo@gmail.com", "--name", "Jo"),
            "error: gmail.com is a free-mail domain: it cannot belong to a customer",
            "hint: use `syncd reconcile assign jo@gmail.com --customer NAME` to make the person a contact",
        ),
    ]  # fmt: skip
    for args, error, hint in cases:
        result = world.cli(*args, expect=2)
        assert error in result.stderr and hint in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output
    world.cli("customers", "add", "Acme", "--domain", "acme.com")
    result = world.cli("records", "link", "999", "--customer", "Acme", expect=2)
    assert "error: no record 999\nhint: `syncd records list` shows record ids" in result.stderr


def test_a_table_printed_into_a_pipe_breaks_no_word(tmp_path: Path) -> None:
    """Into a pipe or a file a table is as wide as its cells: Rich's default of 80 columns
    broke long domains across lines ("globe/x.co./uk")."""
    config = tmp_path / "syncd.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n\n'
        '[organization]\ninternal_domains = ["example.com"]\n'
    )
    customers = {
        "Globe International Trading and Logistics Holdings": [
            "globe-international-trading-and-logistics-holdings.x.co.uk",
            "globe-international-trading-and-logistics-holdings-second-brand.example.org",
        ],
        "Acme Corp": ["acme.com"],
    }
    runner = CliRunner()
    for name, domains in customers.items():
        args = [x for domain in domains for x in ("--domain", domain)]
        added = runner.invoke(cli, ["--config", str(config), "customers", "add", name, *args])
        assert added.exit_code == 0, added.output
    through_runner = runner.invoke(cli, ["--config", str(config), "customers", "list"]).stdout
    printed = [through_runner]
    # Into a pipe, whether or not a width is exported (xdist's workers export COLUMNS=80).
    for columns in (None, "80"):
        env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
        env.update({"COLUMNS": columns} if columns else {})
        printed.append(
            subprocess.run(
                [str(Path(sys.executable).parent / "syncd"), "--config", str(config),
                 "customers", "list"],
                capture_output=True, text=True, check=True, env=env,
            ).stdout
        )  # fmt: skip
    for output in printed:
        for name, domains in customers.items():
            (row,) = [line for line in output.splitlines() if name in line] or [output]
            for domain in domains:
                assert domain in row, output
