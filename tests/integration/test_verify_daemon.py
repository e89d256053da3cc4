"""`syncd run` verifies each source on `[sync] verify_interval` and exports what is unaccounted."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from syncd.schema.tables import provenance
from tests.conftest import World
from tests.daemon import DaemonProcess, wait_until
from tests.mail import make_message
from tests.servers.dovecot import Dovecot
from tests.servers.ports import free_port
from tests.servers.sample import CUSTOMERS_CSV

pytestmark = [pytest.mark.dovecot, pytest.mark.daemon]


@pytest.fixture
def daemon_log(tmp_path: Path) -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for proc in started:
        proc.close()


def test_the_daemon_verifies_on_schedule_and_exports_unaccounted_messages(
    dovecot: Dovecot, tmp_path: Path, daemon_log: list[DaemonProcess]
) -> None:
    world = World(dovecot, tmp_path, f"sqlite:///{tmp_path / 'syncd.db'}")
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    world.deliver("alice", make_message(message_id="<v1@acme.com>"))
    world.deliver("alice", make_message(message_id="<v2@acme.com>"))
    port = free_port()
    config = world.write_config(
        extra='[sync]\ninterval = 2\njitter = 0.1\nverify_interval = 1\n\n[metrics]\nlisten = "127.0.0.1:'
        f'{port}"\n'
    )
    proc = DaemonProcess(config, tmp_path / "daemon.log").start()
    daemon_log.append(proc)

    def metrics() -> str:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def recorded() -> int:
        return len(world.records())

    wait_until(lambda: recorded() == 2, 30, "the messages")
    wait_until(lambda: 'syncd_unaccounted_messages{source="alice"} 0.0' in metrics(), 30, "0")
    # A message the store lost below the cursor: no sync fetches it again; verify finds it.
    engine = create_engine(world.db_url)
    with engine.begin() as conn:
        conn.execute(provenance.delete().where(provenance.c.uid == 2))
    engine.dispose()
    wait_until(lambda: 'syncd_unaccounted_messages{source="alice"} 1.0' in metrics(), 30, "1")
    assert "verify.missing" in proc.log.read_text()
    assert world.passwords["alice"] not in proc.log.read_text()
