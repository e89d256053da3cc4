"""A command closes its database connections when it ends: a process that runs many commands
(the tests' CliRunner; a supervisor importing syncd) does not hold a pool per command."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import World
from tests.servers.dovecot import Dovecot
from tests.servers.postgres import scratch_database


@pytest.mark.postgres
def test_commands_run_in_one_process_leave_no_connection_open(
    dovecot: Dovecot, tmp_path: Path, pg_admin: str
) -> None:
    with scratch_database(pg_admin) as url:
        world = World(dovecot, tmp_path, url)
        for _ in range(30):
            world.cli("status", "--json", expect=None)
            world.cli("records", "list", "--json")
        name = url.rsplit("/", 1)[1]
        probe = create_engine(pg_admin, isolation_level="AUTOCOMMIT")
        with probe.connect() as conn:
            left = conn.scalar(
                text("SELECT count(*) FROM pg_stat_activity WHERE datname = :d"), {"d": name}
            )
        probe.dispose()
        assert left == 0
