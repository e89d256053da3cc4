"""The CLI's start-up: `syncd --help` and importing the CLI load no heavy module, and the
command list shown without importing the commands matches the commands themselves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click

from syncd.cli.example_config import EXAMPLE
from syncd.cli.main import COMMANDS, cli

HEAVY = (
    "alembic", "caldav", "icalendar", "sqlalchemy", "imapclient", "structlog", "rich",
    "fastapi", "uvicorn", "niquests", "syncd.engine.daemon",
)  # fmt: skip
# What a one-shot command of mail only never needs (issue #20): the calendar stack without a
# calendar, verify without --repair, the daemon and the HTTP API.
NOT_FOR_SYNC = (
    "caldav", "niquests", "icalendar", "fastapi", "uvicorn", "syncd.engine.daemon",
    "syncd.engine.verify", "syncd.engine.calendar_sync", "syncd.engine.imap.idle_hub",
    "syncd.engine.directory_sync", "syncd.api.app", "rich.progress", "structlog",
    "syncd.store.privacy", "syncd.store.reconcile",
)  # fmt: skip


def _loaded_after(code: str, modules: tuple[str, ...] = HEAVY) -> list[str]:
    probe = f"import json, sys\n{code}\nprint(json.dumps(sorted(m for m in {modules!r} if m in sys.modules)))\n"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_importing_the_cli_imports_no_heavy_module() -> None:
    assert _loaded_after("import syncd.cli.main") == []


def test_help_imports_no_heavy_module() -> None:
    code = (
        "from syncd.cli.main import cli\n"
        "try:\n    cli.main(['--help'], prog_name='syncd')\nexcept SystemExit as done:\n"
        "    assert done.code == 0\n"
    )
    assert _loaded_after(code) == []


def test_the_help_list_is_each_commands_own_first_sentence() -> None:
    with click.Context(cli) as ctx:  # closed: what loading a command froze is unfrozen
        for name, entry in COMMANDS.items():
            command = cli.get_command(ctx, name)
            assert command is not None and command.name == name
            assert command.get_short_help_str(limit=1000) == entry.short_help, name


def test_help_lists_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from syncd.cli.main import main; main()", "--help"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    listed = result.stdout.split("Commands:")[1].split()
    assert [name for name in sorted(COMMANDS) if name not in listed] == []


def test_the_sync_command_imports_no_calendar_verify_daemon_or_api() -> None:
    assert _loaded_after("import syncd.cli.cmd_sync", NOT_FOR_SYNC) == []


def test_the_sync_command_loads_no_message_parser_token_client_or_idle() -> None:
    """Until a folder has mail to read, `sync` needs no parser; XOAUTH2 and IDLE, never."""
    unused = (
        "syncd.engine.imap.pipeline", "syncd.domain.message", "syncd.domain.capture",
        "syncd.connectors.oauth2", "syncd.connectors.imap_idle",
    )  # fmt: skip
    assert _loaded_after("import syncd.cli.cmd_sync", unused) == []


def test_the_status_command_imports_no_calendar_daemon_or_api() -> None:
    assert _loaded_after("import syncd.cli.cmd_status", NOT_FOR_SYNC) == []


def test_reading_a_configuration_without_groups_imports_no_groups() -> None:
    """Without a [[mailbox_group]], no groups (secret sources, subprocess, shlex)."""
    code = (
        "from syncd.config_file import parse_config\n"
        "parse_config({'database': {'url': 'sqlite:///x.db'}})\n"
    )
    unused = ("syncd.groups", "syncd.secret_sources", "subprocess", "shlex")
    assert _loaded_after(code, unused) == []


def test_loading_pauses_the_collector_and_freezes_what_loaded() -> None:
    import gc

    from syncd.cli.app import loading

    assert gc.isenabled()
    try:
        with loading():
            assert not gc.isenabled()
            loaded = [object() for _ in range(10)]  # stands in for a module's objects
        assert gc.isenabled()
        assert gc.get_freeze_count() >= len(loaded)
    finally:
        gc.unfreeze()


def test_loading_leaves_a_paused_collector_paused() -> None:
    import gc

    from syncd.cli.app import loading

    gc.disable()
    try:
        with loading():
            pass
        assert not gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()


def test_a_command_run_in_process_leaves_nothing_frozen(tmp_path: Path) -> None:
    """The tests run many commands in one process: what a command froze while it loaded is
    the collector's again when it ends, failing or not."""
    import gc

    from click.testing import CliRunner

    config = tmp_path / "syncd.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n')
    runs = ((["status", "--json"], 3), (["records", "list", "--customer", "nobody"], 2))
    for args, code in runs:  # exit 3: no daemon runs; exit 2: no such customer
        result = CliRunner().invoke(cli, ["--config", str(config), *args])
        assert result.exit_code == code, result.output
        assert gc.isenabled()
        assert gc.get_freeze_count() == 0


def test_a_daemon_without_api_loads_no_web_stack_at_its_stop() -> None:
    # A SIGTERM's step that stops the API imported FastAPI and uvicorn to find nothing to
    # stop: 1.3-5.1 s of a stop on a loaded machine (issue #20).
    code = "from syncd.api.service import ApiService\nApiService().stop()\n"
    assert _loaded_after(code, ("fastapi", "uvicorn", "syncd.api.server")) == []


def test_reading_the_configuration_imports_no_pydantic(tmp_path: Path) -> None:
    """Issue #20: pydantic alone cost 0.11-0.15 s of every command's start; the
    configuration (every section of the example, a group expanded) is read without it."""
    config = tmp_path / "syncd.toml"
    config.write_text(
        EXAMPLE
        + '\n[api]\nlisten = "127.0.0.1:0"\n\n[[followup]]\nrule = "gone_quiet"\nmin_records = 3\n'
        + '\n[[mailbox_group]]\nname = "sales"\nhost = "127.0.0.1"\nlogin_user = "%u*syncd"\n'
        + 'password_env = "P"\nmembers = ["dana@example.com", {owner = "eve@example.com"}]\n'
    )
    code = (
        "from syncd.config_file import load_config\n"
        f"config = load_config({str(config)!r})\n"
        "assert [box.name for box in config.mailbox][-2:] == ['dana@example.com', 'eve@example.com']\n"
    )
    assert _loaded_after(code, ("pydantic", "pydantic_core", "annotated_types")) == []


def test_status_finds_the_schema_head_without_importlib_resources() -> None:
    """importlib.resources (tempfile, random, zipfile behind it) cost ~0.01 s of status."""
    code = "from syncd.store import status_read\nassert status_read.code_head()"
    assert _loaded_after(code, ("importlib.resources", "tempfile", "zipfile")) == []
