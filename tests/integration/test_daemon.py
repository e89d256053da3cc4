"""`syncd run` as a real subprocess against Dovecot (and Radicale): push, signals, outages."""

from __future__ import annotations

import json
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from syncd.schema.tables import participants, provenance, records, source_health, source_states
from tests.conftest import World
from tests.daemon import SYNCD, DaemonProcess, wait_until
from tests.mail import make_message
from tests.servers.dovecot import Dovecot
from tests.servers.ports import free_port
from tests.servers.postgres import scratch_database
from tests.servers.radicale import Radicale
from tests.servers.sample import CUSTOMERS_CSV

pytestmark = [pytest.mark.dovecot, pytest.mark.daemon]

QUICK = "[sync]\ninterval = 2\njitter = 0.1\n"


def _counts(db_url: str) -> dict[str, Any]:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        out = {
            "records": conn.scalar(select(func.count()).select_from(records)),
            "participants": conn.scalar(select(func.count()).select_from(participants)),
            "sources": conn.scalar(select(func.count()).select_from(provenance)),
            "keys": sorted(conn.scalars(select(records.c.key))),
        }
    engine.dispose()
    return out


def _record_count(db_url: str) -> int:
    return int(_counts(db_url)["records"])


@pytest.fixture
def sqlite_world(dovecot: Dovecot, tmp_path: Path) -> World:
    return World(dovecot, tmp_path, f"sqlite:///{tmp_path / 'syncd.db'}")


@pytest.fixture
def daemons(tmp_path: Path) -> Any:
    started: list[DaemonProcess] = []

    def start(config: Path, name: str = "daemon") -> DaemonProcess:
        proc = DaemonProcess(config, tmp_path / f"{name}.log").start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.close()


def test_idle_turns_a_delivered_message_into_a_record_within_seconds(
    sqlite_world: World, daemons: Any
) -> None:
    world = sqlite_world
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    # A poll every 10 minutes: only IDLE can explain a record within seconds.
    port = free_port()
    config = world.write_config(
        extra=f'[sync]\ninterval = 600\n\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
    )
    daemon = daemons(config)
    wait_until(
        lambda: "0 syncing" not in daemon.log.read_text() and _first_sync_done(world),
        20,
        "first sync",
    )
    # The hub says how many watchers it holds in IDLE: the one mailbox.  Mail delivered
    # before that would wait for the next poll (600 s), not for a push.
    wait_until(
        lambda: (
            b"syncd_watchers_open 1.0"
            in urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        ),
        15,
        "the watchers gauge",
    )
    latencies = []
    for n in range(3):
        world.deliver("alice", make_message(message_id=f"<idle{n}@acme.com>"))
        latencies.append(
            wait_until(lambda n=n: _record_count(world.db_url) == n + 1, 30, "IDLE push")
        )
    assert max(latencies) < 30
    code, took = daemon.stop()
    assert code == 0 and took < 10
    log = daemon.log.read_text()
    assert "daemon.stopped" in log
    # Every line of the daemon's log is JSON (stderr is not a terminal), with its source.
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert any(line.get("mailbox") == "alice" and line.get("folder") == "INBOX" for line in lines)
    assert world.passwords["alice"] not in log


def _first_sync_done(world: World) -> bool:
    engine = create_engine(world.db_url)
    try:
        with engine.connect() as conn:
            return bool(
                conn.scalar(
                    select(func.count())
                    .select_from(source_states)
                    .where(
                        source_states.c.kind == "mailbox",
                        source_states.c.place == "",
                        source_states.c.last_success_at.is_not(None),
                    )
                )
            )
    except Exception:  # the daemon may not have created the schema yet
        return False
    finally:
        engine.dispose()


def _backfill_world(world: World, messages: int) -> None:
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    world.dovecot.deliver_many(
        world.logins["alice"],
        [
            make_message(message_id=f"<bulk{n}@acme.com>", subject=f"Bulk {n}")
            for n in range(messages)
        ],
    )


def _reference(world: World, tmp: Path) -> dict[str, Any]:
    """The same mailbox into a fresh database by one uninterrupted `syncd sync`."""
    clean = World(world.dovecot, tmp, f"sqlite:///{tmp / 'clean.db'}")
    tmp.mkdir()
    clean.logins, clean.passwords = dict(world.logins), dict(world.passwords)
    for name, pw in world.passwords.items():
        (tmp / f"{name}.pass").write_text(pw)
    clean.customers(CUSTOMERS_CSV)
    clean.cli("sync")
    return _counts(clean.db_url)


def test_sigterm_mid_backfill_exits_promptly_and_a_restart_finishes_exactly(
    sqlite_world: World, daemons: Any
) -> None:
    world = sqlite_world
    # Enough mail that the backfill is still running when SIGTERM comes, on a fast machine too.
    _backfill_world(world, 8000)
    config = world.write_config(capture="batch_size = 50", extra=QUICK)
    daemon = daemons(config)
    wait_until(lambda: _record_count(world.db_url) >= 100, 60, "backfill under way")
    code, took = daemon.stop()
    assert code == 0, daemon.log.read_text()[-2000:]
    assert took < 10
    partial = _record_count(world.db_url)
    assert 0 < partial < 8000  # really interrupted
    again = daemons(config, "restart")
    wait_until(lambda: _record_count(world.db_url) == 8000, 120, "backfill finished")
    again.stop()
    assert _counts(world.db_url) == _reference(world, world.tmp / "clean")


def test_kill_9_at_random_points_loses_and_doubles_nothing(
    sqlite_world: World, daemons: Any
) -> None:
    world = sqlite_world
    _backfill_world(world, 2000)
    config = world.write_config(capture="batch_size = 40", extra=QUICK)
    rng = random.Random(7)
    for round_ in range(3):
        daemon = daemons(config, f"kill{round_}")
        time.sleep(rng.uniform(0.1, 1.5))
        daemon.kill()
    final = daemons(config, "final")
    wait_until(lambda: _record_count(world.db_url) == 2000, 120, "backfill finished")
    final.stop()
    assert _counts(world.db_url) == _reference(world, world.tmp / "clean")


def test_imap_outage_is_recovered_without_a_restart(tmp_path: Path, daemons: Any) -> None:
    server = Dovecot(
        Path(tempfile.mkdtemp(prefix="syncd-test-outage-")), {"rep": "pw-outage"}
    ).start()
    try:
        db_url = f"sqlite:///{tmp_path / 'outage.db'}"
        config = tmp_path / "syncd.toml"
        config.write_text(
            f'[database]\nurl = "{db_url}"\n[organization]\ninternal_domains = ["example.com"]\n'
            f'{QUICK}\n[[mailbox]]\nname = "rep"\nowner = "alice@example.com"\n'
            f'host = "127.0.0.1"\nport = {server.port}\nsecurity = "plain"\nusername = "rep"\n'
            'password = "pw-outage"\nfolders = ["INBOX"]\n'
        )
        server.deliver("rep", make_message(message_id="<before@acme.com>"))
        daemon = daemons(config)
        wait_until(lambda: _record_count(db_url) == 1, 30, "first message")
        server.stop()
        time.sleep(3)  # at least one poll fails: the daemon backs off, it does not exit
        assert daemon.proc is not None and daemon.proc.poll() is None
        server.deliver("rep", make_message(message_id="<during@acme.com>"))
        server.start()
        wait_until(lambda: _record_count(db_url) == 2, 60, "recovery after the outage")
        code, _ = daemon.stop()
        assert code == 0
        assert "source.deferred" in daemon.log.read_text()
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


def test_a_wrong_password_needs_attention_and_the_others_keep_syncing(
    sqlite_world: World, daemons: Any
) -> None:
    world = sqlite_world
    world.rep("alice")
    world.rep("bob")
    world.rep("carol")
    world.customers(CUSTOMERS_CSV)
    # carol's server accepts connections and never says a word.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    world.write_config(
        extra=QUICK,
        mailbox={
            "alice": {"password_file": None, "password": "not-the-password"},
            "carol": {"port": silent.getsockname()[1], "timeout": 3},
        },
    )
    daemon = daemons(world.config_path)
    world.deliver("bob", make_message(message_id="<b1@acme.com>"))
    wait_until(lambda: _record_count(world.db_url) == 1, 30, "bob's first message")
    world.deliver("bob", make_message(message_id="<b2@acme.com>"))
    wait_until(lambda: _record_count(world.db_url) == 2, 30, "bob's second message")

    def alice_needs_attention() -> bool:
        result = world.cli("status", "--json", expect=None)
        status = json.loads(result.stdout)
        alice = next(s for s in status["sources"] if s.get("mailbox") == "alice")
        return alice["activity"] is not None and alice["activity"]["state"] == "attention"

    wait_until(alice_needs_attention, 30, "alice marked as needing attention")
    result = world.cli("status", expect=2)
    assert "needs attention" in result.stdout and "refused the login" in result.stdout
    assert "daemon: running" in result.stdout
    # One login attempt, then nothing for an hour: the account is never locked by us.
    # (Its log line may land a moment after the status row: wait for it before counting.)
    wait_until(lambda: "refused the login" in daemon.log.read_text(), 10, "the refusal logged")
    attempts = daemon.log.read_text().count("refused the login")
    time.sleep(3)
    assert daemon.log.read_text().count("refused the login") == attempts
    # carol's silent server costs her own worker its timeout, nobody else anything.
    wait_until(lambda: "timed out" in daemon.log.read_text(), 30, "carol's timeout")
    daemon.stop()
    silent.close()
    assert "not-the-password" not in daemon.log.read_text()
    assert world.cli("status", expect=3).stdout.startswith("daemon: NOT RUNNING")


def test_sighup_adds_a_mailbox_and_refuses_a_broken_config(
    sqlite_world: World, daemons: Any
) -> None:
    world = sqlite_world
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    world.deliver("alice", make_message(message_id="<a1@acme.com>"))
    config = world.write_config(extra=QUICK)
    daemon = daemons(config)
    wait_until(lambda: _record_count(world.db_url) == 1, 30, "alice's message")

    good = config.read_text()
    config.write_text(good + "\n[[mailbox]]\nname = 1\n")  # a config with errors
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: "config.reload_refused" in daemon.log.read_text(), 10, "refusal")

    world.rep("bob")
    world.deliver("bob", make_message(message_id="<b1@acme.com>"))
    world.write_config(extra=QUICK)
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: _record_count(world.db_url) == 2, 30, "bob added without a restart")
    assert "config.reloaded" in daemon.log.read_text()
    assert daemon.proc is not None and daemon.proc.poll() is None


def test_a_second_daemon_on_the_same_sqlite_database_refuses_to_start(
    sqlite_world: World, daemons: Any
) -> None:
    world = sqlite_world
    world.rep("alice")
    config = world.write_config(extra=QUICK)
    daemons(config)
    result = world.cli("run", expect=2)
    assert "already using this database" in result.output
    assert "Traceback" not in result.output


def test_a_second_daemon_through_a_symlinked_path_refuses_too(
    sqlite_world: World, daemons: Any
) -> None:
    # The lock file sat beside the path as written: a second daemon naming the same file
    # through a symlinked folder or a symlink to the file took its own lock and ran too.
    world = sqlite_world
    world.rep("alice")
    config = world.write_config(extra=QUICK)
    daemons(config)
    (world.tmp / "elsewhere").symlink_to(world.tmp, target_is_directory=True)
    (world.tmp / "alias.db").symlink_to(world.tmp / "syncd.db")
    for path in (world.tmp / "elsewhere" / "syncd.db", world.tmp / "alias.db"):
        other = world.tmp / "other.toml"
        other.write_text(config.read_text().replace(world.db_url, f"sqlite:///{path}"))
        assert str(path) in other.read_text()
        # A subprocess with a deadline: a second daemon that does start would never return.
        result = subprocess.run(
            [SYNCD, "--config", str(other), "run"], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 2, result.stderr
        assert "already using this database" in result.stderr


def test_metrics_and_healthz(sqlite_world: World, daemons: Any) -> None:
    world = sqlite_world
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    world.deliver("alice", make_message(message_id="<m1@acme.com>"))
    port = free_port()
    config = world.write_config(extra=QUICK + f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
    daemons(config)
    wait_until(lambda: _record_count(world.db_url) == 1, 30, "the message")
    base = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:  # noqa: S310 - loopback
        assert response.status == 200

    def metrics() -> str:
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:  # noqa: S310
            return str(response.read().decode())

    # The record commits with its batch; the counter moves when the whole sync is done.
    captured = 'syncd_records_captured_total{kind="email",source="alice"} 1.0'
    wait_until(lambda: captured in metrics(), 10, "the counter")
    text = metrics()
    assert 'syncd_last_success_timestamp_seconds{source="alice"}' in text
    assert "syncd_sync_duration_seconds_bucket" in text
    assert world.passwords["alice"] not in text


@pytest.mark.postgres
@pytest.mark.radicale
def test_two_daemons_share_one_postgresql_without_doubling_anything(
    dovecot: Dovecot, radicale: Radicale, pg_admin: str, tmp_path: Path, daemons: Any
) -> None:
    """Several daemons on one PostgreSQL: each source is held by one daemon at a time
    (a lease), and mail and meetings are captured once, whoever captures them."""
    with scratch_database(pg_admin) as db_url:
        world = World(dovecot, tmp_path, db_url)
        for rep in ("alice", "bob", "carol"):
            world.rep(rep)
        world.cal_rep("alice", radicale)
        world.customers(CUSTOMERS_CSV)
        world.put_event("alice", "m.ics", MEETING)
        config = world.write_config(extra=QUICK)
        first, second = daemons(config, "one"), daemons(config, "two")
        for n, rep in enumerate(("alice", "bob", "carol") * 4):
            world.deliver(rep, make_message(message_id=f"<shared{n}@acme.com>"))
        wait_until(lambda: _record_count(db_url) == 13, 60, "12 emails and 1 meeting")
        status = json.loads(world.cli("status", "--json").stdout)
        assert status["daemon"]["others"] == 1
        engine = create_engine(db_url)
        with engine.connect() as conn:
            holders = {
                name: holder
                for name, holder in conn.execute(
                    select(source_health.c.name, source_health.c.daemon_id)
                )
            }
        engine.dispose()
        assert set(holders) == {"alice", "bob", "carol", "alice-cal"}
        assert all(holders.values())
        # A clean stop frees the stopped daemon's leases; the other one takes them over.
        first.stop()
        world.deliver("alice", make_message(message_id="<after-stop@acme.com>"))
        world.deliver("bob", make_message(message_id="<after-stop-b@acme.com>"))
        wait_until(lambda: _record_count(db_url) == 15, 60, "mail after one daemon stopped")
        second.stop()
        counts = _counts(db_url)
        assert counts["records"] == len(set(counts["keys"])) == 15
        logs = first.log.read_text() + second.log.read_text()
        for secret in [*world.passwords.values(), *radicale.users.values()]:
            assert secret not in logs
        assert counts["sources"] == 14  # one source row per message copy, never two


MEETING = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:shared-meeting\r\n"
    "DTSTAMP:20240101T000000Z\r\nDTSTART:{start}\r\nDTEND:{end}\r\nSUMMARY:Quarterly review\r\n"
    "ORGANIZER:mailto:alice@example.com\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:wile@acme.com\r\n"
    "END:VEVENT\r\nEND:VCALENDAR\r\n"
).format(
    start=(datetime.now(UTC) + timedelta(days=2)).strftime("%Y%m%dT%H0000Z"),
    end=(datetime.now(UTC) + timedelta(days=2, hours=1)).strftime("%Y%m%dT%H0000Z"),
)


def test_the_daemon_evaluates_follow_ups_after_capturing(sqlite_world: World, daemons: Any) -> None:
    world = sqlite_world
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    week_ago = datetime.now(UTC) - timedelta(days=7)
    world.deliver("alice", make_message(message_id="<unanswered@acme.com>", date=week_ago))
    daemons(world.write_config(extra=QUICK))

    def task_titles() -> list[str]:
        result = world.cli("tasks", "list", "--json", expect=None)
        return [t["title"] for t in json.loads(result.stdout)] if result.exit_code == 0 else []

    wait_until(
        lambda: task_titles() == ["Reply to Wile Coyote: Quote for 40 seats"], 30, "the task"
    )


def test_sigterm_exits_within_10_seconds_even_when_a_sync_hangs(
    sqlite_world: World, daemons: Any
) -> None:
    world = sqlite_world
    world.rep("alice")
    silent = socket.socket()  # accepts connections and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        config = world.write_config(
            extra=QUICK, mailbox={"alice": {"port": silent.getsockname()[1], "timeout": 60}}
        )
        daemon = daemons(config)
        time.sleep(1)  # the sync is now waiting for a greeting that never comes
        code, took = daemon.stop()
        assert code == 0 and took < 10
    finally:
        silent.close()
