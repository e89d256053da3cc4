"""`syncd run` keeps the directory in step with a `[directory] file` edited under it."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from syncd.schema.tables import customers
from tests.conftest import World
from tests.daemon import DaemonProcess, wait_until
from tests.mail import make_message
from tests.servers.dovecot import Dovecot
from tests.servers.ports import free_port

pytestmark = [pytest.mark.dovecot, pytest.mark.daemon]

BOTH = """\
customer,domains,contact_name,contact_email
Acme Corp,acme.com,Wile Coyote,wile@acme.com
Globex,globex.io,Hank Scorpio,hank@globex.io
"""
ACME_ONLY = BOTH.splitlines(keepends=True)[0] + BOTH.splitlines(keepends=True)[1]


@pytest.fixture
def world(dovecot: Dovecot, tmp_path: Path) -> World:
    return World(dovecot, tmp_path, f"sqlite:///{tmp_path / 'syncd.db'}")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for proc in started:
        proc.close()


def _archived(db_url: str) -> dict[str, bool]:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(select(customers.c.name, customers.c.archived_at)).all()
    engine.dispose()
    return {name: at is not None for name, at in rows}


def _links(world: World, message_id: str) -> list[str] | None:
    found = [r for r in world.records() if r["message_id"] == message_id]
    return [c["name"] for c in found[0]["customers"]] if found else None


def _syncs(port: int) -> float:
    """How many syncs of alice's mailbox the daemon has finished (its metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith('syncd_sync_duration_seconds_count{source="alice"}'):
                return float(line.split()[-1])
    return 0.0


def _write(path: Path, text: str) -> None:
    # As an export job should: a new file renamed over the old one, never half written.
    partial = path.with_suffix(".tmp")
    partial.write_text(text)
    partial.replace(path)


def test_the_daemon_mirrors_an_edited_file_and_keeps_the_directory_when_it_breaks(
    world: World, daemon: list[DaemonProcess]
) -> None:
    world.rep("alice")
    crm = world.tmp / "customers.csv"
    _write(crm, BOTH)
    port = free_port()
    config = world.write_config(
        extra="[sync]\ninterval = 2\njitter = 0.1\n\n"
        '[directory]\nfile = "customers.csv"\ninterval = 1\n\n'
        f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
    )
    daemon.append(DaemonProcess(config, world.tmp / "daemon.log").start())
    log = daemon[0].log
    wait_until(
        lambda: _archived(world.db_url) == {"Acme Corp": False, "Globex": False}, 20, "import"
    )

    _write(crm, ACME_ONLY)
    took = wait_until(lambda: _archived(world.db_url).get("Globex") is True, 20, "archive")
    assert took < 10  # within a few intervals, however busy the machine
    world.deliver("alice", make_message(sender="hank@globex.io", message_id="<d1@globex.io>"))
    wait_until(lambda: _links(world, "d1@globex.io") is not None, 30, "mail while archived")
    assert _links(world, "d1@globex.io") == []

    _write(crm, BOTH)
    wait_until(lambda: _archived(world.db_url).get("Globex") is False, 20, "restore")
    # A sync decides with the directory it began with: mail that a pass begun before the
    # restore picks up would be matched against the old one.  Two passes more, and one of
    # them began after it.
    passes = _syncs(port)
    wait_until(lambda: _syncs(port) >= passes + 2, 20, "a pass after the restore")
    world.deliver("alice", make_message(sender="hank@globex.io", message_id="<d2@globex.io>"))
    wait_until(lambda: _links(world, "d2@globex.io") is not None, 30, "mail after restore")
    assert _links(world, "d2@globex.io") == ["Globex"]
    assert _links(world, "d1@globex.io") == []  # decided when it came: not relinked

    _write(crm, "customer,domains,contact_name,contact_email\nAcme Corp,co.uk,,\n")

    def status() -> dict[str, Any]:
        return json.loads(world.cli("status", "--json", expect=None).stdout)  # type: ignore[no-any-return]

    wait_until(lambda: status()["directory"]["state"] == "error", 20, "the refusal")
    directory = status()["directory"]
    assert "line 2:" in directory["last_error"] and "co.uk" in directory["last_error"]
    assert _archived(world.db_url) == {"Acme Corp": False, "Globex": False}  # unchanged
    assert world.cli("status", expect=None).exit_code == 1  # degraded, not failing
    assert "directory.refused" in log.read_text()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        metrics = answer.read().decode()
    assert 'syncd_directory_reload_total{result="error"} 1.0' in metrics
    assert 'syncd_directory_reload_total{result="ok"} 3.0' in metrics
    code, _ = daemon[0].stop()
    assert code == 0


def test_the_daemon_runs_a_command_every_interval_and_refuses_an_empty_export(
    world: World, daemon: list[DaemonProcess]
) -> None:
    world.rep("alice")
    export = world.tmp / "export.csv"
    _write(export, BOTH)
    script = world.tmp / "crm-export.sh"
    script.write_text(f'#!/bin/sh\ncat "{export}"\n')
    script.chmod(0o755)
    config = world.write_config(
        extra="[sync]\ninterval = 5\n\n"
        f'[directory]\ncommand = ["{script}"]\ninterval = 1\ntimeout = 10\n'
    )
    daemon.append(DaemonProcess(config, world.tmp / "daemon.log").start())
    wait_until(
        lambda: _archived(world.db_url) == {"Acme Corp": False, "Globex": False}, 20, "import"
    )
    _write(export, ACME_ONLY)
    wait_until(lambda: _archived(world.db_url).get("Globex") is True, 20, "archive")

    _write(export, "customer,domains,contact_name,contact_email\n")  # an export that failed

    def directory() -> dict[str, Any]:
        out = world.cli("status", "--json", expect=None).stdout
        return json.loads(out)["directory"]  # type: ignore[no-any-return]

    wait_until(lambda: directory()["state"] == "error", 20, "the refusal")
    assert "lists no customers" in directory()["last_error"]
    assert _archived(world.db_url) == {"Acme Corp": False, "Globex": True}  # unchanged
    _write(export, BOTH)
    wait_until(lambda: directory()["state"] == "ok", 20, "recovery")
    assert _archived(world.db_url) == {"Acme Corp": False, "Globex": False}
