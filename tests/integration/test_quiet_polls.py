"""An unchanged mailbox costs the daemon about nothing (issue #20): its poll asks the kept
connection for each folder's STATUS and touches no database; the "last success" of such
polls is written for all sources at once, a few statements a heartbeat."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine, event, select

from syncd.config_file import load_config
from syncd.engine import poll_ledger
from syncd.engine import sources as sources_module
from syncd.engine.imap.idle_hub import IdleHub
from syncd.engine.imap.mail_sync import open_imap
from syncd.engine.imap.sessions import DaemonSessions
from syncd.engine.poll_ledger import PollLedger
from syncd.engine.sources import MailboxSource
from syncd.metrics import Metrics
from syncd.schema.tables import records, source_health, source_states
from syncd.store.database import open_database
from syncd.store.directory import load_directory
from tests.conftest import World
from tests.daemon import DaemonProcess, wait_until
from tests.mail import make_message


class Statements:
    """Every SQL statement the engine runs while counting."""

    def __init__(self, engine: Engine) -> None:
        self.seen: list[str] = []
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        self.seen.append(str(args[2]).split(None, 1)[0].upper())

    def take(self) -> list[str]:
        out, self.seen = self.seen, []
        return out


@pytest.fixture
def polled(world: World) -> Iterator[tuple[World, Engine, MailboxSource, DaemonSessions]]:
    world.rep("alice")
    config = load_config(world.write_config(mailbox={"alice": {"folders": ["INBOX", "Sent"]}}))
    engine = open_database(config.database.url)
    metrics = Metrics()
    sessions = DaemonSessions(config.sync, metrics, open_imap)
    yield world, engine, MailboxSource(engine, config, config.mailbox[0], sessions), sessions
    sessions.close_all()
    engine.dispose()


def test_an_unchanged_mailbox_is_polled_without_the_database(polled: Any) -> None:
    world, engine, source, sessions = polled
    world.deliver("alice", make_message(message_id="<first@acme.com>"))
    assert source.unchanged() is None  # no clean pass yet: the pass must run
    with engine.connect() as conn:
        directory = load_directory(conn, source._config.capture)
    assert source.sync(directory).total("captured") == 1
    statements = Statements(engine)
    for _ in range(3):
        assert source.unchanged() == ["INBOX", "Sent"]
    assert statements.take() == []  # not a read, not a write
    assert sessions.logins == 1  # the kept connection, logged in once
    # New mail in either folder: the pass runs, and captures it.
    world.deliver("alice", make_message(message_id="<sent@acme.com>"), folder="Sent")
    assert source.unchanged() is None
    assert source.sync(directory).total("captured") == 1
    assert source.unchanged() == ["INBOX", "Sent"]
    # A lease lost (the session discarded): the next poll is a full pass again.
    sessions.discard("alice")
    assert source.unchanged() is None


@pytest.mark.parametrize("notify", [False, True], ids=["idle-only", "notify"])
def test_a_watched_inbox_costs_its_poll_no_command(
    polled: Any, monkeypatch: pytest.MonkeyPatch, notify: bool
) -> None:
    """INBOX held in IDLE since before the pass read it: the watch reports any new mail
    (and the daemon then runs the pass), so the poll asks the server only about Sent, and
    with INBOX alone, nothing: the IDLE is not even interrupted.  With NOTIFY (the default)
    Sent is covered too, once the watch has covered it since the pass (or a STATUS) read it."""
    world, engine, source, sessions = polled
    asked: list[list[str]] = []
    real = sources_module.unchanged_folders

    def spy(session: Any, folders: list[str], cursors: Any) -> bool:
        asked.append(list(folders))
        return real(session, folders, cursors)

    monkeypatch.setattr(sources_module, "unchanged_folders", spy)
    if notify:  # Sent made before NOTIFY names it: Dovecot announces a folder made later
        world.dovecot.maildir(world.logins["alice"], "Sent")
    hub = IdleHub(notify=notify)
    news: list[str] = []
    watch = hub.watch(source.config, news.append)
    try:
        sessions.watch("alice", watch)
        wait_until(lambda: watch.state == "idle", 10, "the watch in IDLE")
        with engine.connect() as conn:
            directory = load_directory(conn, source._config.capture)
        assert source.sync(directory).ok  # begun after the watch's IDLE: INBOX covered
        assert source.unchanged() == ["INBOX", "Sent"]
        if not notify:
            assert asked == [["Sent"]]  # on the watch's connection, lent and given back
        else:
            assert asked == []  # Sent under NOTIFY since before the pass: no command
            assert watch.state == "idle" and news == []
            # A watch logged in after the pass read the folders covers neither: both asked
            # (STATUS for Sent), then covered from that confirmation on.
            hub.unwatch(watch)
            watch = hub.watch(source.config, news.append)
            sessions.watch("alice", watch)
            wait_until(lambda: watch.state == "idle", 10, "the new watch in IDLE")
            assert source.unchanged() == ["INBOX", "Sent"]
            assert asked == [["INBOX", "Sent"]]
            wait_until(lambda: watch.state == "idle", 10, "the watch back in IDLE")
            assert source.unchanged() == ["INBOX", "Sent"]
            assert asked == [["INBOX", "Sent"]]
        first = list(asked)
        wait_until(lambda: watch.state == "idle", 10, "the watch back in IDLE")
        source.config = replace(source.config, folders=["INBOX"])
        connection, reused = watch.connection, sessions.reused
        for _ in range(3):
            assert source.unchanged() == ["INBOX"]
        assert asked == first and sessions.reused == reused + 3
        assert watch.state == "idle" and watch.connection is connection and news == []
        # New mail: the watch says so (the daemon's next sync is then the pass).
        world.deliver("alice", make_message(message_id="<pushed@acme.com>"))
        wait_until(lambda: news == ["alice"], 10, "the watch's report")
        assert source.sync(directory).total("captured") == 1
        # A watch that logged in again after the pass read INBOX covers nothing: STATUS.
        hub.unwatch(watch)
        late = hub.watch(source.config, news.append)
        sessions.watch("alice", late)
        wait_until(lambda: late.state == "idle", 10, "the new watch in IDLE")
        assert source.unchanged() == ["INBOX"]
        assert asked[-1] == ["INBOX"]
        assert source.unchanged() == ["INBOX"]  # confirmed after it logged in: covered now
        assert asked[-1] == ["INBOX"] and len(asked) == len(first) + 1
        world.deliver("alice", make_message(message_id="<late@acme.com>"))
        wait_until(lambda: news[-1:] == ["alice"] and len(news) == 2, 10, "the report")
    finally:
        hub.close()


def test_a_refused_folder_makes_the_pass_run_and_report_it(polled: Any) -> None:
    _world, engine, source, sessions = polled
    with engine.connect() as conn:
        directory = load_directory(conn, source._config.capture)
    assert source.sync(directory).ok
    sessions.remember_cursors(
        "alice",
        {**(sessions.cursors("alice") or {}), "Nowhere": sessions.cursors("alice")["INBOX"]},
    )
    source.config = replace(source.config, folders=["INBOX", "Nowhere"])
    assert source.unchanged() is None
    report = source.sync(directory)
    assert not report.ok and "Nowhere" in (report.reason() or "")


def _states(engine: Engine) -> dict[tuple[str, str], tuple[Any, Any]]:
    c = source_states.c
    with engine.connect() as conn:
        rows = conn.execute(select(c.source, c.place, c.last_attempt_at, c.last_success_at))
        return {(r.source, r.place): (r.last_attempt_at, r.last_success_at) for r in rows}


class _Quiet:
    kind = "mailbox"

    def __init__(self, name: str, places: list[str] | None) -> None:
        self.name = name
        self.places = places

    def unchanged(self) -> list[str] | None:
        return self.places


def test_the_ledger_writes_the_polls_of_held_sources_at_once(db_url: str) -> None:
    engine = open_database(db_url)
    at = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
    ledger = PollLedger(clock=lambda: at)
    assert ledger.quiet(_Quiet("alice", ["INBOX", "Sent"]))
    assert ledger.quiet(_Quiet("bob", ["INBOX"]))
    assert not ledger.quiet(_Quiet("carol", None))  # changed: the pass runs, nothing noted
    statements = Statements(engine)
    # bob passed to another daemon meanwhile: his polls are his new holder's to record.
    assert ledger.flush(engine, {("mailbox", "alice"), ("mailbox", "carol")}) == 1
    writes = [s for s in statements.take() if s in ("INSERT", "UPDATE")]
    assert len(writes) <= 2  # two statements, however many sources
    assert _states(engine) == {
        ("alice", ""): (at, at),
        ("alice", "INBOX"): (None, at),
        ("alice", "Sent"): (None, at),
    }
    assert len(ledger) == 0 and ledger.flush(engine, {("mailbox", "alice")}) == 0
    # A holder paused with an older poll in hand never moves the times back.
    stale = PollLedger(clock=lambda: at - timedelta(hours=1))
    assert stale.quiet(_Quiet("alice", ["INBOX"]))
    assert stale.flush(engine, {("mailbox", "alice")}) == 1
    assert _states(engine)[("alice", "")] == (at, at)
    assert _states(engine)[("alice", "INBOX")] == (None, at)
    engine.dispose()


def test_the_ledger_writes_every_poll_in_one_statement(db_url: str) -> None:
    engine = open_database(db_url)
    at = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
    ledger = PollLedger(clock=lambda: at)
    names = [f"rep{n}" for n in range(50)]
    statements = Statements(engine)
    for _ in range(2):  # the second flush updates what the first inserted
        for name in names:
            assert ledger.quiet(_Quiet(name, ["INBOX"]))
        assert ledger.flush(engine, {("mailbox", n) for n in names}) == 50
        assert [s for s in statements.take() if s in ("INSERT", "UPDATE")] == ["INSERT"]
    assert len(_states(engine)) == 100
    engine.dispose()


def test_the_heartbeat_writes_the_polls_once_the_oldest_waited_a_few_beats(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = open_database(db_url)
    now = [100.0]
    monkeypatch.setattr(poll_ledger, "time", SimpleNamespace(monotonic=lambda: now[0]))
    ledger = PollLedger(wait=10.0)
    held = {("mailbox", "alice"), ("mailbox", "bob")}
    assert ledger.flush(engine, held, due=True) == 0  # nothing noted
    assert ledger.quiet(_Quiet("alice", ["INBOX"]))
    now[0] += 6
    assert ledger.quiet(_Quiet("bob", ["INBOX"]))
    assert ledger.flush(engine, held, due=True) == 0 and len(ledger) == 2  # 6 s: not yet
    now[0] += 4
    assert ledger.flush(engine, held, due=True) == 2  # alice's waited 10 s: both written
    assert ledger.quiet(_Quiet("alice", ["INBOX"]))
    assert ledger.flush(engine, held) == 1  # a stop's flush writes whatever waits
    engine.dispose()


def test_the_daemons_unchanged_polls_write_only_the_batched_success(world: World) -> None:
    world.rep("alice")
    world.deliver("alice", make_message(message_id="<before@acme.com>"))
    config = world.write_config(extra="[sync]\ninterval = 1\njitter = 0\nidle = false")
    daemon = DaemonProcess(config, world.tmp / "daemon.log").start()
    engine = open_database(world.db_url)
    try:
        wait_until(lambda: len(world_records(engine)) == 1, 30, "the backfill")
        c = source_health.c

        def health_written() -> Any:
            with engine.connect() as conn:
                return conn.scalar(select(c.updated_at).where(c.name == "alice"))

        def success() -> Any:
            return _states(engine).get(("alice", ""), (None, None))[1]

        wait_until(lambda: success() is not None, 10, "the first success")
        first = success()
        wait_until(lambda: success() > first, 15, "a batched success")  # the pass is over
        written, batched = health_written(), success()
        # Polled every second: "last success" moves on (written by the heartbeat), the
        # source's health row is not written once (no "syncing", no "ok" per poll).
        wait_until(lambda: success() > batched, 15, "another batched success")
        assert health_written() == written
        # New mail is still captured by the next poll.
        world.deliver("alice", make_message(message_id="<after@acme.com>"))
        wait_until(lambda: len(world_records(engine)) == 2, 15, "the new message")
        code, _took = daemon.stop()
        assert code == 0
    finally:
        daemon.close()
        engine.dispose()


def world_records(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(records.c.id)))
