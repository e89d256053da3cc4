"""Only network and server failures are transient: a library that raises something no
network failure explains (an ``AttributeError`` from API drift) is an internal error,
reported once and not retried; resets, refused ports and timeouts keep their kinds.

Real Dovecot and Radicale sessions, with one library method made to fail."""

from __future__ import annotations

import shutil
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import caldav.davclient
import imapclient
import pytest
from sqlalchemy import select

from syncd.config import CalendarConfig, MailboxConfig
from syncd.config_file import parse_config
from syncd.connectors import imap
from syncd.connectors.dav import CalDavSession
from syncd.connectors.imap import ImapSession
from syncd.engine.daemon import Daemon, Scheduled
from syncd.engine.fleet import LEASE
from syncd.engine.imap.idle_hub import IdleHub
from syncd.engine.imap.mail_sync import MailSync
from syncd.engine.sources import MailboxSource
from syncd.engine.task_sync import TaskLists, sync_task_list
from syncd.errors import InternalError, RefusedError, TransientError
from syncd.schema.tables import source_health, source_states
from syncd.store import database, leases
from syncd.store.queries import sync_status
from tests.daemon import wait_until
from tests.mail import make_message
from tests.recorder import Recorder
from tests.servers.dovecot import Dovecot
from tests.servers.ports import free_port
from tests.servers.radicale import Radicale

MAIL_LOGIN = "user297"
CAL_LOGIN = "cal297"
# What a drifted library might put in its message: never to be shown.
LEAKY = "'Account' object has no attribute 'folders' (pw-user297-s3cr3t)"


def _box(port: int, **overrides: object) -> MailboxConfig:
    values: dict[str, object] = {
        "name": "alice", "owner": "alice@example.com", "host": "127.0.0.1", "port": port,
        "security": "plain", "username": MAIL_LOGIN, "password": f"pw-{MAIL_LOGIN}-s3cr3t",
        "timeout": 5,
    }  # fmt: skip
    values.update(overrides)
    return MailboxConfig.from_dict(values)


def _open(box: MailboxConfig) -> ImapSession:
    assert box.password is not None
    password = box.password.get_secret_value()
    return ImapSession.open(box, lambda: password, max_bytes=1_000_000)


def _calendar(url: str, **overrides: object) -> CalendarConfig:
    values: dict[str, object] = {
        "name": "alice-cal", "owner": "alice@example.com", "url": url,
        "username": CAL_LOGIN, "password": f"pw-{CAL_LOGIN}-s3cr3t", "allow_plaintext": True,
        "timeout": 5,
    }  # fmt: skip
    values.update(overrides)
    return CalendarConfig.from_dict(values)


def _dav(config: CalendarConfig) -> CalDavSession:
    assert config.password is not None
    password = config.password.get_secret_value()
    return CalDavSession(config, lambda: password)


class _Counted:
    """A library method replaced by one that raises AttributeError, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        raise AttributeError(LEAKY)


# --- IMAP ------------------------------------------------------------------------------------


@pytest.mark.dovecot
def test_imap_library_drift_is_internal_not_transient(
    dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = _open(_box(dovecot.port))
    try:
        session.examine("INBOX")
        drifted = _Counted()
        monkeypatch.setattr(imapclient.IMAPClient, "search", drifted)
        with pytest.raises(InternalError) as err:
            session.uids_from(1)
    finally:
        session.close()
    assert err.value.kind == "internal" and drifted.calls == 1
    assert "AttributeError at " in err.value.message and "mailbox alice folder INBOX" in str(
        err.value
    )
    assert "s3cr3t" not in str(err.value) and "Account" not in str(err.value)


@pytest.mark.dovecot
def test_a_mailbox_pass_reports_an_internal_error_once_and_status_shows_it_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = Dovecot(Path(tempfile.mkdtemp(prefix="syncd-test-internal-")), {"rep": "pw"}).start()
    try:
        server.deliver("rep", make_message(message_id="<i1@acme.com>"))
        config = parse_config(
            {
                "database": {"url": f"sqlite:///{tmp_path / 'internal.db'}"},
                "organization": {"internal_domains": ["example.com"]},
                "mailbox": [
                    {
                        "name": "rep", "owner": "alice@example.com", "host": "127.0.0.1",
                        "port": server.port, "security": "plain", "username": "rep",
                        "password": "pw", "folders": ["INBOX"],
                    }
                ],
            }
        )  # fmt: skip
        engine = database.open_database(config.database.url)
        drifted = _Counted()
        monkeypatch.setattr(imapclient.IMAPClient, "search", drifted)
        logged = Recorder()
        monkeypatch.setattr(imap, "log", logged)
        (result,) = MailSync(engine, config).run_once()
        assert result.error is not None and result.error.kind == "internal"
        assert drifted.calls == 1  # not retried: the same bug would only come back
        with engine.connect() as conn:
            kind = conn.scalar(
                select(source_states.c.last_error_kind).where(source_states.c.place == "")
            )
            (shown,) = sync_status(conn, ["rep"])
        engine.dispose()
        assert kind == "internal"
        assert (
            shown["state"] == "failing" and "internal error (AttributeError" in shown["last_error"]
        )
        (line,) = [e for e in logged.events if e[1] == "imap.internal_error"]
        assert line[0] == "error" and "AttributeError at " in str(line[2]["error"])
        assert "Account" not in repr(logged.events)  # the type and the place, never the message
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def resetting_port() -> Iterator[tuple[int, list[int]]]:
    """A port that accepts and resets every connection; yields (port, accepts)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    accepts: list[int] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepts.append(1)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # RST, not FIN

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], accepts
    done.set()
    thread.join(2)
    listener.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    done = threading.Event()
    listener.settimeout(0.2)

    def serve() -> None:
        while not done.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    done.set()
    thread.join(2)
    for conn in held:
        conn.close()
    listener.close()


def test_imap_reset_is_transient_and_retried_by_the_login_policy(
    resetting_port: tuple[int, list[int]],
) -> None:
    port, accepts = resetting_port
    with pytest.raises(TransientError) as err:
        _open(_box(port))
    assert err.value.kind == "transient" and len(accepts) == 3  # LOGIN: three attempts


def test_imap_refused_port_is_refused_and_not_retried_inline() -> None:
    with pytest.raises(RefusedError):
        _open(_box(free_port()))


def test_imap_timeout_is_transient(silent_port: int) -> None:
    with pytest.raises(TransientError, match=r"timed out|connection lost"):
        _open(_box(silent_port, timeout=0.3))


# --- CalDAV ----------------------------------------------------------------------------------


@pytest.mark.radicale
def test_caldav_library_drift_is_internal_not_transient(
    radicale: Radicale, monkeypatch: pytest.MonkeyPatch
) -> None:
    radicale.make_calendar(CAL_LOGIN, "drift", "Drift")
    with _dav(_calendar(radicale.url)) as session:
        (found,) = [c for c in session.discover() if c.name == "Drift"]
        assert session.changes(found.url, None, {}).changed == []  # a working session first
        drifted = _Counted()
        monkeypatch.setattr(caldav.davclient.DAVClient, "request", drifted)
        with pytest.raises(InternalError) as err:
            session.changes(found.url, None, {})
        monkeypatch.undo()
    assert err.value.kind == "internal" and drifted.calls == 1  # not retried
    assert "calendar alice-cal: internal error (AttributeError at " in str(err.value)
    assert "s3cr3t" not in str(err.value) and "Account" not in str(err.value)


def test_caldav_reset_is_transient_and_each_request_is_retried(
    resetting_port: tuple[int, list[int]],
) -> None:
    port, accepts = resetting_port
    with (
        _dav(_calendar(f"http://127.0.0.1:{port}/")) as session,
        pytest.raises(TransientError) as err,
    ):
        session.discover()
    assert err.value.kind == "transient"
    assert len(accepts) >= 3  # REQUEST: three attempts (the HTTP client may add its own)


def test_caldav_refused_port_is_refused() -> None:
    with (
        _dav(_calendar(f"http://127.0.0.1:{free_port()}/")) as session,
        pytest.raises(RefusedError),
    ):
        session.discover()


def test_caldav_timeout_is_transient(silent_port: int) -> None:
    with (
        _dav(_calendar(f"http://127.0.0.1:{silent_port}/", timeout=1)) as session,
        pytest.raises(TransientError),
    ):
        session.discover()


# --- the daemon: needs attention, hourly, counted ----------------------------------------------


@pytest.mark.dovecot
def test_the_daemon_holds_an_internal_error_for_attention_and_counts_it(
    dovecot: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "syncd.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/syncd.db"\n\n'
        '[organization]\ninternal_domains = ["example.com"]\n\n'
        f'[[mailbox]]\nname = "alice"\nowner = "alice@example.com"\nhost = "127.0.0.1"\n'
        f'port = {dovecot.port}\nsecurity = "plain"\nusername = "{MAIL_LOGIN}"\n'
        f'password = "pw-{MAIL_LOGIN}-s3cr3t"\nfolders = ["INBOX"]\n'
    )
    dovecot.deliver(MAIL_LOGIN, make_message(message_id="<daemon-internal@acme.com>"))
    daemon = Daemon(config)
    daemon._engine = database.open_database(daemon._config.database.url)
    box = daemon._config.mailbox[0]
    source = Scheduled(MailboxSource(daemon._engine, daemon._config, box), due=0.0)
    daemon._timetable.sources[source.key] = source
    drifted = _Counted()
    monkeypatch.setattr(imapclient.IMAPClient, "search", drifted)
    try:
        with daemon._engine.begin() as conn:
            leases.register_daemon(conn, daemon.id, "test", 1)
            # A daemon syncs only what it holds: the heartbeat claimed it (syncd/engine/fleet.py).
            leases.claim_many(conn, [source.key], daemon.id, LEASE)
        before = time.monotonic()
        daemon._sync(source)
        with daemon._engine.connect() as conn:
            row = conn.execute(select(source_health)).mappings().one()
    finally:
        daemon._engine.dispose()
    assert drifted.calls == 1
    # Needs attention, looked at again in an hour, not in seconds.
    assert source.state == "attention" and source.due - before > 3500
    assert row["state"] == "attention"
    assert row["reason"].startswith("mailbox alice folder INBOX: internal error (AttributeError at")
    assert "s3cr3t" not in row["reason"] and "Account" not in row["reason"]
    counted = daemon._metrics.registry.get_sample_value
    assert counted("syncd_sync_errors_total", {"source": "alice", "kind": "internal"}) == 1
    assert counted("syncd_sync_errors_total", {"source": "alice", "kind": "transient"}) is None


# --- task list URLs shared by worker threads ------------------------------------------------------


@pytest.mark.radicale
def test_worker_threads_share_task_list_urls_on_a_real_server(
    radicale: Radicale, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = database.open_database(f"sqlite:///{tmp_path / 'tasks.db'}")
    logins = [f"cal{n}" for n in range(290, 296)]
    sources = [
        _calendar(
            radicale.url,
            name=f"{login}-src",
            owner=f"{login}@example.com",
            username=login,
            password=f"pw-{login}-s3cr3t",
            tasks_calendar="Follow-ups",
        )
        for login in logins
    ]
    lists = TaskLists()
    lookups: list[str] = []
    real_lookup = CalDavSession.task_list

    def counted_lookup(self: CalDavSession, name: str) -> str:
        lookups.append(name)
        return real_lookup(self, name)

    monkeypatch.setattr(CalDavSession, "task_list", counted_lookup)
    failures: list[BaseException] = []
    start = threading.Barrier(len(sources))

    def passes(source: CalendarConfig) -> None:
        try:
            start.wait()
            for _ in range(3):
                with _dav(source) as session:
                    sync_task_list(engine, source, session, lists)
        except BaseException as err:
            failures.append(err)

    threads = [threading.Thread(target=passes, args=(s,)) for s in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    engine.dispose()
    assert failures == []
    # One discovery per source, whatever the threads did at the same time; later passes
    # use the URL the daemon holds, each source its own.
    assert len(lookups) == len(sources) and len(lists) == len(sources)
    for source, login in zip(sources, logins, strict=True):
        url = lists.get(source)
        assert url is not None and f"/{login}/" in url


@pytest.mark.dovecot
def test_an_idle_watcher_meeting_library_drift_waits_long_and_still_stops_at_once(
    dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    drifted = _Counted()
    # The library call of the watcher's opening that drifted: its EXAMINE of INBOX.
    monkeypatch.setattr(imapclient.IMAPClient, "select_folder", drifted)
    hub = IdleHub()
    watcher = hub.watch(_box(dovecot.port), lambda _name: None)
    try:
        wait_until(lambda: watcher.crashes == 1, 10, "the watcher to meet the drift")
        time.sleep(1.0)
        assert drifted.calls == 1 and watcher.alive  # alive, and not hammering the server
    finally:
        watcher.stop()
        stopped = time.monotonic()
        watcher.join(5)
        hub.close()
    assert not watcher.alive and time.monotonic() - stopped < 2.0
    assert watcher.ended == "stopped"
