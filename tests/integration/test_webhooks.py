"""Signed webhook delivery against a real receiver that verifies every signature with the
``standardwebhooks`` library, on SQLite and PostgreSQL.  Events are put into the outbox
with ``emit()`` here; capture emitting them is tested in test_events and test_webhooks_e2e."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select

from syncd.cli.main import cli
from syncd.config import Config
from syncd.config_file import load_config
from syncd.engine.backlog import Backlog
from syncd.schema.tables import webhook_deliveries, webhook_endpoints
from syncd.store.database import open_database
from syncd.store.events import Event, emit_many
from syncd.webhooks import deliverer as deliverer_module
from syncd.webhooks.deliverer import SENDERS, Deliverer
from syncd.webhooks.policy import Answer
from tests.daemon import wait_until
from tests.recorder import Recorder
from tests.servers.webhook import Receiver, Reply, new_secret


class Hooks:
    """A database, a receiver and a config with one [[webhook]] named "crm"."""

    def __init__(self, db_url: str, tmp: Path) -> None:
        self.db_url = db_url
        self.tmp = tmp
        self.engine: Engine = open_database(db_url)
        self.secret = new_secret()
        (tmp / "crm.secret").write_text(self.secret + "\n")
        self.receiver = Receiver(self.secret).start()
        self.config_path = tmp / "syncd.toml"
        self.runner = CliRunner()
        self.deliverers: list[Deliverer] = []
        self.write_config()

    def write_config(self, extra_keys: str = "", *, more: str = "", sync: str = "") -> None:
        self.config_path.write_text(
            f'[database]\nurl = "{self.db_url}"\n\n'
            + (f"[sync]\n{sync}\n\n" if sync else "")
            + "[[webhook]]\n"
            + 'name = "crm"\n'
            + f'url = "{self.receiver.url}"\n'
            + f'secret_file = "{self.tmp / "crm.secret"}"\n'
            + "timeout = 2\n"
            + extra_keys
            + "\n"
            + more
        )

    @property
    def config(self) -> Config:
        return load_config(self.config_path)

    def emit(self, *events: Event) -> None:
        with self.engine.begin() as conn:
            emit_many(conn, events)

    def start(self, daemon_id: str = "d1", backlog: Backlog | None = None) -> Deliverer:
        deliverer = Deliverer(self.engine, daemon_id, backlog=backlog)
        deliverer.apply(self.config.webhook)
        self.deliverers.append(deliverer)
        return deliverer

    def cli(self, *args: str, expect: int | None = 0) -> Result:
        result = self.runner.invoke(cli, ["--config", str(self.config_path), *args])
        if expect is not None:
            assert result.exit_code == expect, f"exit {result.exit_code}: {result.output}"
        return result

    def endpoint(self) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(select(webhook_endpoints)).one()

    def deliveries(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(webhook_deliveries)))

    def close(self) -> None:
        for deliverer in self.deliverers:
            deliverer.stop(5)
        self.receiver.stop()
        self.engine.dispose()


@pytest.fixture
def hooks(db_url: str, tmp_path: Path) -> Iterator[Hooks]:
    made = Hooks(db_url, tmp_path)
    yield made
    made.close()


@pytest.fixture
def quick_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing endpoint is probed every 0.2-0.5 s instead of up to every 30 s."""
    monkeypatch.setattr(deliverer_module, "PROBE_MIN", 0.2)
    monkeypatch.setattr(deliverer_module, "PROBE_MAX", 0.5)


def record_event(n: int, kind: str = "record.created", *, version: int = 0, **extra: Any) -> Event:
    return Event(kind, f"record:{n}", {"id": n, "version": version, **extra}, extra.get("at"))


def test_every_event_arrives_signed_with_the_envelope(hooks: Hooks) -> None:
    hooks.emit(
        record_event(1),
        Event("task.created", "task:7", {"id": 7, "title": "Call back"}),
        Event("contact.forgotten", "contact:abc", {"address": "x@acme.com"}),
    )
    hooks.start()
    wait_until(lambda: len(hooks.receiver.accepted()) == 3, 10, "three deliveries")
    # Different subjects go concurrently: in any order.
    got = sorted(hooks.receiver.accepted(), key=lambda a: int(a.webhook_id))
    assert hooks.receiver.bad_signatures == 0
    assert [a.event["type"] for a in got] == ["record.created", "task.created", "contact.forgotten"]
    for arrival in got:
        assert arrival.webhook_id == arrival.event["id"]
        assert set(arrival.event) == {"id", "type", "created_at", "data"}
        assert arrival.event["created_at"].endswith("Z")
        assert arrival.signature.startswith("v1,")
    assert got[1].event["data"] == {"id": 7, "title": "Call back"}
    wait_until(lambda: not hooks.deliveries(), 5, "delivered rows deleted")
    assert hooks.endpoint().delivered == 3 and hooks.endpoint().last_success_at is not None


def test_500s_then_refused_then_back_every_event_arrives_in_per_subject_order(
    hooks: Hooks, quick_probes: None
) -> None:
    hooks.receiver.reply = lambda _event: Reply(500, b"internal error")
    # 6 records, 5 versions each: versions of one record must arrive in order.
    hooks.emit(*[record_event(n, "record.updated", version=v) for v in range(5) for n in range(6)])
    hooks.start()
    wait_until(lambda: len(hooks.receiver.arrivals) >= 3, 10, "attempts answered 500")
    hooks.receiver.stop()  # now connections are refused
    hooks.emit(*[record_event(n, "record.updated", version=5) for n in range(6)])
    time.sleep(1.0)
    assert hooks.endpoint().last_error is not None
    assert all(r.state == "pending" for r in hooks.deliveries())
    hooks.receiver.reply = lambda _event: Reply(200)
    hooks.receiver.start()
    wait_until(lambda: len(set(hooks.receiver.delivered_ids())) == 36, 20, "all 36 events")
    assert hooks.receiver.bad_signatures == 0
    by_subject: dict[int, list[int]] = {}
    for arrival in hooks.receiver.accepted():
        by_subject.setdefault(arrival.event["data"]["id"], []).append(
            arrival.event["data"]["version"]
        )
    assert by_subject == {n: [0, 1, 2, 3, 4, 5] for n in range(6)}
    wait_until(lambda: not hooks.deliveries(), 5, "nothing left pending")


def test_410_gone_disables_the_endpoint_and_replay_enables_it(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deliverer_module, "REVIVE_EVERY", 2)  # notices the replay sooner
    hooks.receiver.reply = lambda _event: Reply(410, b"gone")
    hooks.emit(record_event(1))
    hooks.start()
    wait_until(lambda: hooks.endpoint().state == "disabled", 10, "endpoint disabled")
    assert "410 Gone" in hooks.endpoint().reason
    hooks.emit(record_event(2), record_event(3))
    time.sleep(1.0)
    assert len(hooks.receiver.arrivals) == 1  # nothing more is sent while disabled
    listed = json.loads(hooks.cli("webhooks", "list", "--json").stdout)
    assert listed[0]["state"] == "disabled" and "410 Gone" in listed[0]["reason"]
    assert listed[0]["pending"] == 3
    status = hooks.cli("status", "--json", expect=None)
    assert json.loads(status.stdout)["webhooks"][0]["state"] == "disabled"
    assert "webhook crm: disabled, 3 pending" in hooks.cli("status", expect=None).stdout
    hooks.receiver.reply = lambda _event: Reply(200)
    out = hooks.cli("webhooks", "replay", "crm", "--after", "0").stdout
    assert "delivered again" in out
    wait_until(lambda: sorted(set(hooks.receiver.delivered_ids())) == [1, 2, 3], 15, "replayed")
    assert hooks.endpoint().state == "active"


def test_a_4xx_fails_that_event_only_and_is_logged_with_status_and_answer(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder()
    monkeypatch.setattr(deliverer_module, "log", recorder)
    long_answer = b"unknown field \x1b[31mversion\x1b[0m\r\n" + b"x" * 500
    hooks.receiver.reply = lambda event: (
        Reply(422, long_answer) if event["data"]["id"] == 2 else Reply(200)
    )
    hooks.emit(record_event(1), record_event(2), record_event(3))
    hooks.start()
    wait_until(lambda: len(hooks.receiver.accepted()) == 2, 10, "the two good events")
    wait_until(lambda: [r.state for r in hooks.deliveries()] == ["failed"], 5, "one failed row")
    assert len([a for a in hooks.receiver.arrivals if a.status == 422]) == 1  # never retried
    wait_until(lambda: any(e[1] == "webhook.rejected" for e in recorder.events), 5, "a log")
    rejected = [f for level, e, f in recorder.events if e == "webhook.rejected"]
    assert rejected[0]["status"] == 422 and rejected[0]["event_id"] == 2
    answer = str(rejected[0]["answer"])
    assert answer.startswith("unknown field  [31mversion") and len(answer) <= 200
    assert not re.search(r"[\x00-\x1f]", answer)
    listed = json.loads(hooks.cli("webhooks", "list", "--json").stdout)[0]
    assert listed["failed"] == 1 and listed["pending"] == 0
    assert listed["last_error"].startswith("HTTP 422")
    # replay brings the failed one back
    hooks.receiver.reply = lambda _event: Reply(200)
    hooks.cli("webhooks", "replay", "crm", "--after", "1")
    wait_until(lambda: 2 in hooks.receiver.delivered_ids(), 10, "the failed event replayed")


def test_retry_after_is_honoured(hooks: Hooks, monkeypatch: pytest.MonkeyPatch) -> None:
    from syncd.webhooks import policy

    monkeypatch.setattr(policy, "BACKOFF_START", 0.2)  # the backoff alone would retry at once
    answers = iter([Reply(429, b"slow down", {"Retry-After": "2"})])
    hooks.receiver.reply = lambda _event: next(answers, Reply(200))
    hooks.emit(record_event(1))
    hooks.start()
    wait_until(lambda: len(hooks.receiver.accepted()) == 1, 15, "delivery after Retry-After")
    first, second = hooks.receiver.arrivals[0], hooks.receiver.arrivals[1]
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 1.9


def test_deliveries_trickle_while_the_process_captures_a_backlog(hooks: Hooks) -> None:
    # A backfill's capture and its deliveries share one process (and its GIL): delivery
    # yields, so capture keeps its speed, and catches up at full speed once it is done.
    from syncd.webhooks.deliverer import TRICKLE, TRICKLE_PAUSE

    hooks.emit(*[record_event(n) for n in range(600)])
    backlog = Backlog()  # the process's capture, as the daemon hands it to both
    with backlog.capturing():
        started = time.monotonic()
        hooks.start(backlog=backlog)
        wait_until(lambda: len(hooks.receiver.accepted()) > 0, 10, "a first delivery")
        time.sleep(1.0)
        during = len(hooks.receiver.accepted())
        elapsed = time.monotonic() - started
    assert 0 < during <= TRICKLE * (elapsed / TRICKLE_PAUSE + 2)  # a trickle, not a stop
    wait_until(lambda: len(hooks.receiver.accepted()) == 600, 20, "the rest, at full speed")
    assert hooks.receiver.repeats() == {}


def test_since_and_type_filters(hooks: Hooks) -> None:
    hooks.write_config('since = 2026-01-01\nevents = ["record.created", "task.created"]\n')
    old = datetime(2025, 12, 31, 23, 0, tzinfo=UTC)
    new = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    hooks.emit(
        Event("record.created", "record:1", {"id": 1}, old),  # before since: skipped
        Event("record.created", "record:2", {"id": 2}, new),
        Event("record.updated", "record:2", {"id": 2}, new),  # type not wanted
        Event("task.created", "task:3", {"id": 3}, None),  # no occurred_at: always goes
    )
    hooks.start()
    wait_until(lambda: len(hooks.receiver.accepted()) == 2, 10, "two events")
    time.sleep(0.5)
    assert sorted(a.event["data"]["id"] for a in hooks.receiver.accepted()) == [2, 3]
    assert hooks.endpoint().last_event_id == 4


def test_webhooks_test_sends_a_signed_ping(hooks: Hooks) -> None:
    out = hooks.cli("webhooks", "test", "crm").stdout
    assert re.search(r"crm: HTTP 200 in \d+ ms", out) and "answer: ok" in out
    ping = hooks.receiver.accepted()[0]
    assert ping.event["type"] == "ping" and ping.event["data"] == {}
    assert hooks.receiver.bad_signatures == 0
    hooks.receiver.reply = lambda _event: Reply(503, b"down for maintenance\x07")
    failed = hooks.cli("webhooks", "test", "crm", expect=1).stdout
    assert "HTTP 503" in failed and "down for maintenance" in failed and "\x07" not in failed
    unknown = hooks.cli("webhooks", "test", "nope", expect=2)
    assert "no [[webhook]] named 'nope'" in unknown.output and "Traceback" not in unknown.output
    hooks.receiver.stop()
    refused = hooks.cli("webhooks", "test", "crm", expect=1).stdout
    assert "no answer" in refused and "refused" in refused


def test_webhooks_list_json_shows_backlog_and_never_the_secret(hooks: Hooks) -> None:
    hooks.receiver.reply = lambda _event: Reply(503)
    hooks.emit(record_event(1), record_event(2))
    listed = json.loads(hooks.cli("webhooks", "list", "--json").stdout)
    assert listed[0]["name"] == "crm" and listed[0]["url"] == hooks.receiver.url
    assert listed[0]["pending"] == 2 and listed[0]["state"] == "active"
    assert listed[0]["oldest_age_seconds"] >= 0 and listed[0]["last_success_at"] is None
    table = hooks.cli("webhooks", "list").stdout
    assert "crm" in table and hooks.secret not in table
    assert hooks.secret not in json.dumps(listed)


def test_a_failing_endpoint_says_so_until_it_delivers_again(
    hooks: Hooks, quick_probes: None
) -> None:
    """Down for hours is not "active": `failing` in the list and the status (exit 1), and
    back to `active` once a delivery succeeds."""
    hooks.receiver.reply = lambda _event: Reply(503)
    hooks.emit(record_event(1))
    hooks.start()

    def listed() -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(hooks.cli("webhooks", "list", "--json").stdout)
        return found[0]

    wait_until(lambda: listed()["state"] == "failing", 10, "the 503 seen")
    assert listed()["pending"] == 1 and "503" in listed()["last_error"]
    status = json.loads(hooks.cli("status", "--json", expect=None).stdout)
    assert [w["state"] for w in status["webhooks"]] == ["failing"]
    hooks.receiver.reply = lambda _event: Reply(200)
    wait_until(lambda: listed()["state"] == "active", 10, "delivered again")
    assert listed()["pending"] == 0 and hooks.receiver.delivered_ids() == [1]


def test_the_backlog_counts_only_what_the_endpoint_will_take(hooks: Hooks) -> None:
    """An endpoint that takes only some types, or only records since a day, is not shown a
    backlog of events it will never receive."""
    old = datetime(2025, 6, 1, tzinfo=UTC)
    new = datetime(2026, 3, 1, tzinfo=UTC)
    hooks.write_config('events = ["record.created", "task.created"]\nsince = 2026-01-01\n')
    hooks.emit(
        Event("record.created", "record:1", {"id": 1}, old),  # before `since`: skipped
        Event("record.created", "record:2", {"id": 2}, new),
        Event("record.updated", "record:2", {"id": 2}, new),  # not a type it takes
        Event("task.created", "task:3", {"id": 3}, None),  # no occurred_at: always goes
    )
    listed = json.loads(hooks.cli("webhooks", "list", "--json").stdout)
    assert listed[0]["pending"] == 2
    hooks.start()
    wait_until(lambda: len(hooks.receiver.accepted()) == 2, 10, "the two it takes")
    wait_until(
        lambda: json.loads(hooks.cli("webhooks", "list", "--json").stdout)[0]["pending"] == 0,
        10,
        "nothing left",
    )


def test_sync_delivers_what_is_pending_or_says_what_is_not(hooks: Hooks) -> None:
    hooks.write_config(sync="deliver_timeout = 5")
    hooks.emit(*[record_event(n) for n in range(50)])
    out = hooks.cli("sync").stdout
    assert "webhooks: everything delivered" in out
    assert sorted(hooks.receiver.delivered_ids()) == list(range(1, 51))
    hooks.receiver.stop()
    hooks.emit(record_event(99))
    failed = hooks.cli("sync", expect=1).stdout
    assert "webhook crm: FAILED: 1 events still pending" in failed


def test_config_rejects_unsafe_or_ambiguous_webhooks(tmp_path: Path) -> None:
    from syncd.config_file import parse_config
    from syncd.errors import ConfigError

    def problems(more: list[dict[str, Any]] | None = None, **keys: Any) -> str:
        hook = {"name": "crm", "url": "https://crm.example/h", "secret": "whsec_AAAA", **keys}
        try:
            parse_config({"webhook": [hook, *(more or [])]})
        except ConfigError as err:
            return "\n".join(err.problems)
        return ""

    assert problems() == ""
    assert "in clear" in problems(url="http://crm.example/h")
    assert problems(url="http://crm.example/h", allow_plaintext=True) == ""
    assert problems(url="http://127.0.0.1:9/h") == ""
    assert "exactly one of" in problems(secret_env="X")
    assert "whsec_" in problems(secret="not-a-secret")
    assert "is not a length of time" in problems(retry_for="soon")
    clash = {"name": "crm", "url": "https://b.example/", "secret_env": "B"}
    assert "used twice" in problems([clash])


@pytest.mark.postgres
def test_two_deliverers_on_one_postgresql_send_each_event_once(
    pg_admin: str, tmp_path: Path
) -> None:
    from tests.servers.postgres import scratch_database

    with scratch_database(pg_admin) as url:
        hooks = Hooks(url, tmp_path)
        try:
            # A slow receiver keeps both deliverers busy at once.
            # Both are running before the events come, and more records wait than one claim
            # takes (512), so neither drains the backlog alone; 800 records get two versions.
            hooks.receiver.reply = lambda _event: Reply(200, sleep=0.005)
            first, second = hooks.start("daemon-a"), hooks.start("daemon-b")
            time.sleep(1.0)
            for start in range(0, 2000, 250):
                hooks.emit(*[record_event(n % 1200, version=n) for n in range(start, start + 250)])
            wait_until(lambda: len(hooks.receiver.accepted()) >= 2000, 60, "2000 deliveries")
            time.sleep(0.5)
            assert hooks.receiver.repeats() == {}
            assert sorted(hooks.receiver.delivered_ids()) == list(range(1, 2001))
            versions: dict[int, list[int]] = {}
            for arrival in hooks.receiver.accepted():
                data = arrival.event["data"]
                versions.setdefault(data["id"], []).append(data["version"])
            assert all(v == sorted(v) for v in versions.values())  # per-record order
            # Both took part: each sends over at most SENDERS keep-alive connections.
            assert len({a.peer for a in hooks.receiver.accepted()}) > SENDERS
            assert first is not second
        finally:
            hooks.close()


def test_a_delivery_failing_past_retry_for_is_marked_failed(
    hooks: Hooks, quick_probes: None
) -> None:
    hooks.write_config('retry_for = "2s"\n')
    hooks.receiver.reply = lambda _event: Reply(503, b"still down")
    hooks.emit(record_event(1), record_event(1, "record.updated", version=1))
    hooks.start()
    wait_until(lambda: any(r.state == "failed" for r in hooks.deliveries()), 15, "expiry")
    listed = json.loads(hooks.cli("webhooks", "list", "--json").stdout)[0]
    assert listed["failed"] >= 1 and "HTTP 503: still down" in listed["last_error"]
    # The failed event no longer holds its record's next event back.
    attempted = {a.webhook_id for a in hooks.receiver.arrivals}
    wait_until(lambda: "2" in {a.webhook_id for a in hooks.receiver.arrivals}, 15, "next event")
    assert "1" in attempted


def test_replay_since_a_date_delivers_those_events_again(hooks: Hooks) -> None:
    hooks.emit(record_event(1), record_event(2))
    hooks.start()
    wait_until(lambda: len(hooks.receiver.accepted()) == 2, 10, "first deliveries")
    both = hooks.cli("webhooks", "replay", "crm", "--after", "1", "--since", "2020-01-01", expect=2)
    assert "exactly one of --after ID or --since DATE" in both.output
    future = hooks.cli("webhooks", "replay", "crm", "--since", "2999-01-01").stdout
    assert "0 taken again" in future
    hooks.cli("webhooks", "replay", "crm", "--since", "2020-01-01")
    wait_until(lambda: len(hooks.receiver.accepted()) == 4, 10, "both again")
    assert hooks.receiver.repeats() == {"1": 2, "2": 2}
    unknown = hooks.cli("webhooks", "replay", "nope", "--after", "0", expect=2)
    assert "no [[webhook]] named 'nope'" in unknown.output


def test_an_unreadable_stored_event_fails_alone(hooks: Hooks) -> None:
    from syncd.schema.tables import events

    hooks.emit(record_event(1))
    with hooks.engine.begin() as conn:
        conn.execute(
            events.insert().values(
                type="record.created",
                subject="record:2",
                created_at=datetime.now(UTC),
                data="{not json",
            )
        )
    hooks.emit(record_event(3))
    hooks.start()
    wait_until(lambda: sorted(hooks.receiver.delivered_ids()) == [1, 3], 10, "the good events")
    wait_until(lambda: [r.state for r in hooks.deliveries()] == ["failed"], 5, "one failed")
    assert "not valid JSON" in hooks.deliveries()[0].last_error


def test_a_config_change_enables_an_endpoint_disabled_by_410(hooks: Hooks) -> None:
    answers = iter([Reply(410)])  # gone once; the endpoint at its new url takes everything
    hooks.receiver.reply = lambda _event: next(answers, Reply(200))
    hooks.emit(record_event(1))
    deliverer = hooks.start()
    wait_until(lambda: hooks.endpoint().state == "disabled", 10, "endpoint disabled")
    hooks.emit(record_event(2))
    deliverer.apply(hooks.config.webhook)  # unchanged config (a SIGHUP): still disabled
    time.sleep(0.5)
    assert hooks.endpoint().state == "disabled" and hooks.receiver.accepted() == []
    hooks.config_path.write_text(hooks.config_path.read_text().replace("/hooks", "/hooks?v=2"))
    deliverer.apply(hooks.config.webhook)
    wait_until(lambda: sorted(hooks.receiver.delivered_ids()) == [1, 2], 10, "delivery resumed")
    assert hooks.endpoint().state == "active" and hooks.endpoint().reason is None


def test_delivered_everywhere_tells_forget_when_an_event_may_go(hooks: Hooks) -> None:
    from syncd.webhooks import queue

    hooks.receiver.reply = lambda event: Reply(503) if event["id"] == "2" else Reply(200)
    hooks.emit(record_event(1), record_event(2))
    hooks.start()
    wait_until(lambda: hooks.receiver.delivered_ids() == [1], 10, "event 1")

    def delivered() -> set[int]:  # the outcome is stored a moment after the receiver's 2xx
        with hooks.engine.connect() as conn:
            return queue.delivered_everywhere(conn, [1, 2, 3], ["crm"])

    wait_until(lambda: delivered() == {1}, 10, "event 1's outcome stored")
    time.sleep(0.5)  # event 2 keeps failing: it never joins
    assert delivered() == {1}
    with hooks.engine.connect() as conn:
        assert queue.delivered_everywhere(conn, [1], ["crm", "never-started"]) == set()


def test_a_slow_receiver_never_gets_a_claimed_event_twice(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claimed deliveries wait for a sender; a batch (BATCH through SENDERS) can take longer
    than a claim's lease (60 s; 64 answers of 1 s each), and the expired claims were taken
    and sent again by the same daemon (or another).  Scaled down: a 1.5 s lease, one
    sender, eight claimed at once, 0.6 s an answer (the last is sent after 4.2 s)."""
    from datetime import timedelta

    monkeypatch.setattr(deliverer_module, "lease_for", lambda _config: timedelta(seconds=1.5))
    # A request starts only while its claim has room for it: 0.8 s + one answer < 1.5 s.
    monkeypatch.setattr(deliverer_module, "start_window", lambda _config: 0.8)
    monkeypatch.setattr(deliverer_module, "SENDERS", 1)
    monkeypatch.setattr(deliverer_module, "BATCH", 8)
    monkeypatch.setattr(deliverer_module, "REFILL", 1)
    hooks.receiver.reply = lambda _event: Reply(200, sleep=0.6)
    hooks.emit(*[record_event(n) for n in range(8)])
    hooks.start()
    wait_until(lambda: len(set(hooks.receiver.delivered_ids())) >= 8, 30, "8 deliveries")
    time.sleep(0.5)
    assert sorted(hooks.receiver.delivered_ids()) == list(range(1, 9))
    assert hooks.receiver.repeats() == {}


def test_a_replay_keeps_per_subject_order_with_a_newer_event_still_pending(
    hooks: Hooks,
) -> None:
    """Replayed events of a subject whose newer event is still pending go first: they were
    queued not ready behind it, so the receiver got the newest state, then the older ones
    again, and kept a stale record."""
    from datetime import timedelta

    from syncd.webhooks import queue

    config = hooks.config.webhook[0]
    hooks.emit(record_event(1, version=1), record_event(1, version=2))
    lease = timedelta(seconds=60)
    with hooks.engine.begin() as conn:
        queue.ensure_endpoints(conn, [config])
        queue.take_new(conn, config)
    with hooks.engine.begin() as conn:  # the first is delivered, the second waits (503)
        (first,) = queue.claim(conn, "crm", "d1", limit=10, lease=lease)
        assert first.event_id == 1
        queue.record(
            conn,
            "crm",
            "d1",
            [queue.Result(first, Answer(200), "delivered")],
            retry_for=86400,
            rng=random.Random(0),
        )
    with hooks.engine.begin() as conn:
        queue.replay(conn, "crm", 0)
        queue.take_new(conn, config)
    with hooks.engine.begin() as conn:
        claimed = queue.claim(conn, "crm", "d1", limit=10, lease=lease)
    assert [c.event_id for c in claimed] == [1]


def test_claims_use_the_database_clock_not_a_fast_host(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon whose clock ran 90 s fast took the rows another daemon held for 60 s."""
    from datetime import timedelta

    from syncd.webhooks import queue

    class Fast(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.now(tz) + timedelta(seconds=90)

    config = hooks.config.webhook[0]
    hooks.emit(*[record_event(n) for n in range(5)])
    lease = timedelta(seconds=60)
    with hooks.engine.begin() as conn:
        queue.ensure_endpoints(conn, [config])
        queue.take_new(conn, config)
        assert len(queue.claim(conn, "crm", "d1", limit=10, lease=lease)) == 5
    monkeypatch.setattr(queue, "datetime", Fast)
    with hooks.engine.begin() as conn:
        assert queue.claim(conn, "crm", "d2", limit=10, lease=lease) == []


def test_a_claim_taken_over_is_neither_renewed_nor_recorded(hooks: Hooks) -> None:
    """The fence: once another daemon claimed a delivery, the first one's renewal says it
    is gone and its outcome is left out; the new holder's counts."""
    from datetime import timedelta

    from syncd.webhooks import queue

    config = hooks.config.webhook[0]
    hooks.emit(record_event(1))
    with hooks.engine.begin() as conn:
        queue.ensure_endpoints(conn, [config])
        queue.take_new(conn, config)
        (stale,) = queue.claim(conn, "crm", "d1", limit=10, lease=timedelta(seconds=-1))
        (fresh,) = queue.claim(conn, "crm", "d2", limit=10, lease=timedelta(seconds=60))
    assert fresh.epoch == stale.epoch + 1
    rng = random.Random(0)
    with hooks.engine.begin() as conn:
        assert queue.renew(conn, "crm", "d1", [stale], lease=timedelta(seconds=60)) == set()
        lost = queue.record(
            conn, "crm", "d1", [queue.Result(stale, Answer(200), "delivered")],
            retry_for=86400, rng=rng,
        )  # fmt: skip
        assert (len(lost.results), lost.lost) == (0, 1)
    assert [(r.claimed_by, r.state) for r in hooks.deliveries()] == [("d2", "pending")]
    with hooks.engine.begin() as conn:
        kept = queue.record(
            conn, "crm", "d2", [queue.Result(fresh, Answer(200), "delivered")],
            retry_for=86400, rng=rng,
        )  # fmt: skip
        assert (len(kept.results), kept.lost) == (1, 0)
    assert hooks.deliveries() == []


def test_failed_deliveries_are_pruned_with_their_events(hooks: Hooks) -> None:
    from datetime import timedelta

    from syncd.engine.event_upkeep import events_upkeep

    hooks.receiver.reply = lambda _event: Reply(400, b"no")
    hooks.write_config(more='[events]\nkeep = "1d"\n')
    hooks.emit(record_event(1), record_event(2))
    deliverer = hooks.start()
    wait_until(lambda: [r.state for r in hooks.deliveries()] == ["failed"] * 2, 10, "failed")
    deliverer.stop(5)
    hooks.deliverers.remove(deliverer)
    later = datetime.now(UTC) + timedelta(days=2)
    assert events_upkeep(hooks.engine, hooks.config, later)["pruned"] == 2
    assert hooks.deliveries() == []


def test_sync_fails_and_says_what_when_every_delivery_failed(hooks: Hooks) -> None:
    """41 failed, 0 delivered (a 307) used to print "everything delivered" and exit 0."""
    hooks.write_config(sync="deliver_timeout = 10")
    hooks.receiver.reply = lambda _event: Reply(307, b"", {"Location": "https://x.example/"})
    hooks.emit(*[record_event(n) for n in range(41)])
    result = hooks.cli("sync", expect=1)
    assert "everything delivered" not in result.output
    assert "webhook crm: FAILED: 41 deliveries failed" in result.output
    assert "HTTP 307 (a redirect, not followed" in result.output
    assert "0 delivered" in result.output


def test_urls_never_show_query_values_or_user_info_and_user_info_is_basic_auth(
    hooks: Hooks,
) -> None:
    import base64

    secret_url = hooks.receiver.url.replace("http://", "http://bob:pa%3Ass@") + "?token=s3cr3t&v=2"
    hooks.write_config()
    hooks.config_path.write_text(
        hooks.config_path.read_text().replace(hooks.receiver.url, secret_url)
    )
    hooks.emit(record_event(1))
    hooks.receiver.reply = lambda _event: Reply(503, b"down")
    hooks.start()
    wait_until(lambda: len(hooks.receiver.arrivals) >= 1, 10, "a request")
    arrival = hooks.receiver.arrivals[0]
    assert arrival.authorization == "Basic " + base64.b64encode(b"bob:pa:ss").decode()
    outputs = [
        hooks.cli("webhooks", "list", "--json").stdout,
        hooks.cli("webhooks", "list").stdout,
        hooks.cli("status", "--json", expect=None).stdout,
        hooks.cli("status", expect=None).stdout,
    ]
    for out in outputs:
        assert "s3cr3t" not in out and "pa%3Ass" not in out and "bob" not in out
    listed = json.loads(outputs[0])[0]
    assert listed["url"].endswith("/hooks?token=***&v=***") and "***@127.0.0.1" in listed["url"]
    # A config error quotes the url without them too.
    plain = secret_url.replace("127.0.0.1", "crm.example")
    hooks.config_path.write_text(hooks.config_path.read_text().replace(secret_url, plain))
    refused = hooks.cli("webhooks", "list", expect=2).output
    assert "in clear" in refused and "s3cr3t" not in refused and "pa%3Ass" not in refused


def test_an_unencodable_stored_event_neither_stalls_its_endpoint_nor_crashes_the_feed(
    hooks: Hooks,
) -> None:
    from syncd.schema.tables import events

    hooks.emit(record_event(1), Event("record.created", "record:2", {"id": 2, "s": "a\ud800b"}))
    with hooks.engine.connect() as conn:
        stored = conn.execute(select(events.c.data).where(events.c.id == 2)).scalar_one()
    assert "\\ud800" not in stored and "\ufffd" in stored  # valid by construction
    with hooks.engine.begin() as conn:  # as versions before stored it: an escaped surrogate
        conn.execute(
            events.insert().values(
                type="record.created", subject="record:3", created_at=datetime.now(UTC),
                data='{"id":3,"s":"a\\ud800b"}',
            )
        )  # fmt: skip
    hooks.emit(record_event(3, "record.updated"), record_event(4))
    listed = json.loads(hooks.cli("events", "list", "--json").stdout)
    assert [e["data"]["id"] for e in listed] == [1, 2, 3, 3, 4]
    hooks.start()
    wait_until(lambda: sorted(hooks.receiver.delivered_ids()) == [1, 2, 3, 4, 5], 10, "all")
    sent = [a.webhook_id for a in hooks.receiver.accepted()]
    assert sent.index("3") < sent.index("4")  # record 3's two events, in order
    assert {a.event["data"].get("s") for a in hooks.receiver.accepted()} >= {"a\ufffdb"}


def test_forget_leaves_no_address_in_an_endpoint_error_echoing_the_payload(
    hooks: Hooks, quick_probes: None
) -> None:
    """A receiver refusing contact.forgotten with a 500 that echoes it stored the address
    as the endpoint's last error, shown by `webhooks list` and `status --json`."""
    from syncd.schema.tables import webhook_deliveries, webhook_endpoints

    address = "zora.quinn@q-example.io"
    hooks.receiver.reply = lambda event: Reply(500, json.dumps(event).encode())
    hooks.emit(Event("record.created", "record:1", {"id": 1, "from": address}))
    hooks.start()
    wait_until(lambda: address in (hooks.endpoint().last_error or ""), 10, "the echo stored")
    hooks.cli("forget", address, "--yes")
    wait_until(
        lambda: any(a.event["type"] == "contact.forgotten" for a in hooks.receiver.arrivals),
        15,
        "contact.forgotten refused",
    )
    time.sleep(0.5)  # its outcome stored
    outputs = [
        hooks.cli("webhooks", "list", "--json").stdout,
        hooks.cli("status", "--json", expect=None).stdout,
    ]
    with hooks.engine.connect() as conn:
        outputs += [str(r) for r in conn.execute(select(webhook_endpoints))]
        outputs += [str(r) for r in conn.execute(select(webhook_deliveries))]
    assert not [o for o in outputs if address in o or "zora.quinn" in o]
    assert "[forgotten]" in hooks.endpoint().last_error


def test_the_pending_gauge_follows_a_long_round(hooks: Hooks) -> None:
    """The gauge was set only when a claim ran: a hung endpoint's round (requests cut off
    after their deadline, one after another) showed no backlog for minutes."""
    import socket

    from syncd.metrics import Metrics

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)
    url = f"http://127.0.0.1:{hung.getsockname()[1]}/hooks"
    hooks.config_path.write_text(
        hooks.config_path.read_text()
        .replace(hooks.receiver.url, url)
        .replace("timeout = 2", "timeout = 1")
    )
    metrics = Metrics()

    def gauge() -> float | None:
        return metrics.registry.get_sample_value("syncd_webhook_pending", {"webhook": "crm"})

    deliverer = Deliverer(hooks.engine, "d1", metrics)
    hooks.deliverers.append(deliverer)
    try:
        deliverer.apply(hooks.config.webhook)
        wait_until(lambda: gauge() == 0, 10, "the idle gauge")
        hooks.emit(*[record_event(n) for n in range(100)])
        wait_until(lambda: (gauge() or 0) > 0, 8, "the backlog shown")
    finally:
        hung.close()
