"""Start-up (issue #20): `syncd sync` of a config with mailboxes only, run for real against
Dovecot, imports neither the calendar stack nor verify, the daemon or the HTTP API; and a
pass that logs nothing imports no structlog (nor the rich it loads), and the pass's upkeep
no forget or reconcile machinery."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import World
from tests.mail import make_message

UNUSED = (
    "caldav", "niquests", "icalendar", "fastapi", "uvicorn", "syncd.engine.daemon",
    "syncd.engine.verify", "syncd.engine.calendar_sync", "syncd.engine.imap.idle_hub",
    "syncd.api.app", "rich", "structlog", "syncd.store.privacy", "syncd.store.reconcile",
)  # fmt: skip


def _sync_twice(world: World, watched: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """`syncd sync` in a fresh process, twice (the backfill of one message, then a pass that
    finds the mailbox unchanged): each run's output and which of ``watched`` it loaded."""
    world.rep("alice")
    world.deliver("alice", make_message(subject="Quote", sender="wile@acme.com"))
    config = world.write_config()
    probe = (
        "import json, sys\n"
        "from syncd.cli.main import cli\n"
        f"try:\n    cli.main(['--config', {str(config)!r}, 'sync'], prog_name='syncd')\n"
        "except SystemExit as done:\n    assert not done.code, done.code\n"
        f"print(json.dumps(sorted(m for m in {watched!r} if m in sys.modules)))\n"
    )
    runs: list[tuple[str, list[str]]] = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        )
        runs.append((done.stdout, json.loads(done.stdout.splitlines()[-1])))
    return runs


def test_a_mail_only_sync_imports_only_what_it_uses(world: World) -> None:
    for output, loaded in _sync_twice(world, UNUSED):
        assert "alice:" in output
        assert loaded == []


# What a pass that finds nothing new never needs: the message parser and the capture
# decisions (there is no message to read), the XOAUTH2 token client (the mailbox logs in
# with a password), the IDLE connector (`sync` watches nothing) and tenacity (a login
# that succeeds at once is never retried: connectors/retry.py).
NOT_FOR_AN_UNCHANGED_PASS = (
    "syncd.engine.imap.pipeline", "syncd.domain.message", "syncd.domain.capture",
    "syncd.domain.body", "syncd.domain.html_text", "syncd.connectors.oauth2",
    "syncd.connectors.imap_idle", "tenacity",
)  # fmt: skip


def test_a_sync_of_an_unchanged_mailbox_loads_no_parser_token_client_or_idle(
    world: World,
) -> None:
    (backfill, loaded_by_backfill), (unchanged, loaded) = _sync_twice(
        world, NOT_FOR_AN_UNCHANGED_PASS
    )
    assert "alice: 1 captured" in backfill
    # The backfill parsed a message: the probe does see what it loads.
    assert "syncd.domain.message" in loaded_by_backfill
    assert "alice: 0 captured" in unchanged
    assert loaded == []
