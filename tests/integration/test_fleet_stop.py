"""SIGTERM right after a takeover: the daemon exits within 10 s whatever it is waiting on.

A daemon that has just taken over a killed peer's mailboxes logs their watches in (a dozen at
a time), its polls and verifies wait on the server, and its stop releases hundreds of leases
in the database.  The process used to wait at exit for every login in flight (each bounded
only by the mailbox's timeout), and its stop's database writes waited on any lock for as
long as it was held.  Here the Dovecot is paused (SIGSTOP) before the takeover, so every
login hangs, and a lease row is locked by another transaction when SIGTERM comes.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from syncd.schema.tables import daemons, source_health
from tests.daemon import DaemonProcess, wait_until
from tests.servers.dovecot import Dovecot
from tests.servers.postgres import scratch_database

pytestmark = [pytest.mark.dovecot, pytest.mark.daemon, pytest.mark.postgres]

MAILBOXES = 24


@pytest.fixture
def own_dovecot() -> Iterator[Dovecot]:
    # Its own server, to pause: not under pytest's tmp_path (private to root; Dovecot's
    # users must read it).
    root = Path(tempfile.mkdtemp(prefix="syncd-test-dovecot-"))
    users = {f"rep{i}": f"pw-rep{i}-s3cr3t" for i in range(MAILBOXES)}
    server = Dovecot(root, users, max_connections=4 * MAILBOXES).start()
    try:
        yield server
    finally:
        _signal_dovecot(server, signal.SIGCONT)
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _signal_dovecot(server: Dovecot, sig: signal.Signals) -> None:
    """Every Dovecot process (the master's process group)."""
    try:
        master = int((server.root / "run" / "master.pid").read_text().strip())
        os.killpg(master, sig)
    except (OSError, ValueError):
        pass


def _config(db_url: str, server: Dovecot) -> str:
    boxes = "".join(
        f'[[mailbox]]\nname = "{user}"\nowner = "{user}@example.com"\nhost = "127.0.0.1"\n'
        f'port = {server.port}\nsecurity = "plain"\nusername = "{user}"\n'
        f'password = "{password}"\nfolders = ["INBOX"]\ntimeout = 60\n\n'
        for user, password in server.users.items()
    )
    return (
        f'[database]\nurl = "{db_url}"\n[organization]\ninternal_domains = ["example.com"]\n'
        f"[sync]\ninterval = 600\nconcurrency = 4\n\n{boxes}"
    )


def test_sigterm_right_after_a_takeover_exits_within_ten_seconds(
    own_dovecot: Dovecot, pg_admin: str, tmp_path: Path
) -> None:
    with scratch_database(pg_admin) as db_url:
        engine = create_engine(db_url)
        config = tmp_path / "syncd.toml"
        config.write_text(_config(db_url, own_dovecot))
        a = DaemonProcess(config, tmp_path / "a.log")
        b = DaemonProcess(config, tmp_path / "b.log")
        try:
            a.start()
            b.start()

            def holders() -> dict[int, int]:
                """Mailboxes held, by daemon pid."""
                with engine.connect() as conn:
                    rows = conn.execute(
                        select(daemons.c.pid).join(
                            source_health, source_health.c.daemon_id == daemons.c.id
                        )
                    ).scalars()
                    found: dict[int, int] = {}
                    for pid in rows:
                        found[pid] = found.get(pid, 0) + 1
                return found

            assert a.proc is not None and b.proc is not None
            shared = wait_until(
                lambda: (
                    holders().get(a.proc.pid, 0) > 0  # type: ignore[union-attr]
                    and sum(holders().values()) == MAILBOXES
                ),
                60,
                "both daemons hold their share",
            )
            print(f"shared after {shared:.1f}s: {holders()}")
            # Every login from now on hangs: the server accepts and never greets.
            _signal_dovecot(own_dovecot, signal.SIGSTOP)
            before = len(b.log.read_text())
            a.kill()
            wait_until(
                lambda: holders().get(b.proc.pid) == MAILBOXES,  # type: ignore[union-attr]
                60,
                "b took a's mailboxes over",
            )
            # b's main loop starts the watches of what it gained; their logins hang.
            wait_until(
                lambda: "fleet.changed" in b.log.read_text()[before:], 10, "b applied the change"
            )
            time.sleep(1.0)
            # And a lease row locked by another transaction (a peer paused in the middle of
            # a batch, or b's own claim still committing on a loaded database): the stop's
            # release of b's leases would wait on it.
            with engine.connect() as other:
                other.execute(
                    select(source_health.c.name)
                    .where(source_health.c.name == "rep0")
                    .with_for_update()
                ).all()
                code, took = b.stop(within=10)
                other.rollback()
            print(f"SIGTERM after the takeover: exit {code} in {took:.1f}s")
            assert code == 0
            assert took <= 10, took
        finally:
            _signal_dovecot(own_dovecot, signal.SIGCONT)
            a.close()
            b.close()
            engine.dispose()
