"""`syncd run` delivering webhooks as a real subprocess: kill -9 mid-delivery, SIGHUP
reload, SIGTERM, and logs that never hold the secret or a signature."""

from __future__ import annotations

import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.store.database import open_database
from syncd.store.events import Event, emit_many
from syncd.webhooks.deliverer import FLUSH, SENDERS
from tests.daemon import DaemonProcess, stop_all, wait_until
from tests.servers.ports import free_port
from tests.servers.webhook import Receiver, Reply, new_secret

pytestmark = [pytest.mark.daemon]


def _webhook(name: str, receiver: Receiver, secret_file: Path) -> str:
    return (
        f'[[webhook]]\nname = "{name}"\nurl = "{receiver.url}"\n'
        f'secret_file = "{secret_file}"\ntimeout = 5\n\n'
    )


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.stop()


def test_kill_9_mid_delivery_then_restart_delivers_everything_repeating_only_in_flight(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    url = f"sqlite:///{tmp_path / 'syncd.db'}"
    secret = new_secret()
    (tmp_path / "crm.secret").write_text(secret)
    crm = Receiver(secret).start()
    receivers.append(crm)
    crm.reply = lambda _event: Reply(200, sleep=0.03)  # requests stay in flight a while
    config = tmp_path / "syncd.toml"
    metrics_port = free_port()
    config.write_text(
        f'[database]\nurl = "{url}"\n\n[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n\n'
        + _webhook("crm", crm, tmp_path / "crm.secret")
    )
    engine = open_database(url)
    with engine.begin() as conn:
        emit_many(conn, [Event("record.created", f"record:{n}", {"id": n}) for n in range(400)])
    log = tmp_path / "daemon.log"
    daemon = DaemonProcess(config, log)
    try:
        daemon.start(verbose=2)
        wait_until(lambda: len(crm.accepted()) >= 100, 30, "deliveries under way")
        daemon.kill()
        # Requests in flight reach the receiver or die: wait until its count stays still.
        settled = [-1, time.monotonic()]

        def still() -> bool:
            count = len(crm.arrivals)
            if count != settled[0]:
                settled[:] = [count, time.monotonic()]
            return time.monotonic() - settled[1] >= 0.5

        wait_until(still, 15, "requests in flight to land")
        before_kill = set(crm.delivered_ids())
        assert len(before_kill) < 400, "the kill came too late to be mid-delivery"

        daemon = DaemonProcess(config, log)
        daemon.start(verbose=2)
        wait_until(lambda: len(set(crm.delivered_ids())) == 400, 60, "every event delivered")
        repeats = {int(k) for k in crm.repeats()}
        # Only events sent and not yet stored when the daemon died go twice.
        assert repeats <= before_kill
        # At most what was sent and not yet stored: a flush's worth, plus one more being
        # gathered while the store ran slow, plus the senders' requests in flight.
        assert len(repeats) <= 2 * FLUSH + SENDERS
        assert crm.bad_signatures == 0

        # SIGHUP: a second endpoint starts and receives the outbox from its start.
        secret2 = new_secret()
        (tmp_path / "erp.secret").write_text(secret2)
        erp = Receiver(secret2).start()
        receivers.append(erp)
        config.write_text(
            config.read_text() + _webhook("erp", erp, tmp_path / "erp.secret")
            + 'events = ["task.created"]\n'
        )  # fmt: skip
        daemon.signal(signal.SIGHUP)
        with engine.begin() as conn:
            emit_many(conn, [Event("task.created", "task:1", {"id": 1})])
        wait_until(lambda: erp.delivered_ids() == [401], 10, "the new endpoint's event")
        wait_until(lambda: 401 in crm.delivered_ids(), 10, "the first endpoint goes on")

        # Captured to delivered, with the daemon idle: within a second or so.
        with engine.begin() as conn:
            emit_many(conn, [Event("record.updated", "record:1", {"id": 1})])
        emitted = time.monotonic()
        wait_until(lambda: 402 in crm.delivered_ids(), 10, "a fresh event")
        arrival = next(a for a in crm.accepted() if a.webhook_id == "402")
        assert arrival.at - emitted < 2.0

        def metric(line_start: str) -> float:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as answer:
                text = answer.read().decode()
            found = [ln for ln in text.splitlines() if ln.startswith(line_start)]
            return float(found[0].rsplit(" ", 1)[1]) if found else -1.0

        # Counted by this daemon since its restart: at least what was left after the kill.
        delivered = metric('syncd_webhook_delivered_total{webhook="crm"}')
        assert 400 - len(before_kill) + 2 <= delivered <= 402
        assert metric('syncd_webhook_latency_seconds_count{webhook="crm"}') == delivered

        code, took = daemon.stop()
        assert code == 0 and took < 10
    finally:
        daemon.close()
        engine.dispose()
    text = log.read_text()
    assert "webhook" in text  # the log did record the deliveries ...
    assert secret not in text and secret2 not in text  # ... never the secrets
    assert secret.removeprefix("whsec_") not in text
    signatures = {a.signature.split(",", 1)[1] for a in crm.arrivals + erp.arrivals}
    assert signatures and not any(sig in text for sig in signatures)


@pytest.mark.postgres
def test_two_daemons_on_postgresql_send_each_event_once_and_a_dead_endpoint_slows_no_other(
    tmp_path: Path, receivers: list[Receiver], pg_admin: str
) -> None:
    """Two `syncd run` on one PostgreSQL share the outbox: every event reaches the live
    endpoint once, not once per daemon.  A second endpoint that accepts connections and never
    answers (a hung CRM) costs the first nothing: its backlog grows, shown by the metrics."""
    from tests.servers.postgres import scratch_database

    secret = new_secret()
    (tmp_path / "crm.secret").write_text(secret)
    crm = Receiver(secret).start()
    receivers.append(crm)
    crm.reply = lambda _event: Reply(200, sleep=0.02)  # a few seconds of work: both take part
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)  # the kernel completes the handshakes; nobody ever reads the requests
    hung_url = f"http://127.0.0.1:{hung.getsockname()[1]}/hooks"
    daemons: list[DaemonProcess] = []
    with scratch_database(pg_admin) as url:
        engine = open_database(url)
        try:
            ports = [free_port(), free_port()]
            configs = []
            for n, port in enumerate(ports):
                config = tmp_path / f"syncd-{n}.toml"
                config.write_text(
                    f'[database]\nurl = "{url}"\n\n[metrics]\nlisten = "127.0.0.1:{port}"\n\n'
                    + _webhook("crm", crm, tmp_path / "crm.secret")
                    + f'[[webhook]]\nname = "hung"\nurl = "{hung_url}"\n'
                    f'secret_file = "{tmp_path / "crm.secret"}"\ntimeout = 1\n'
                )
                configs.append(config)
            for n, config in enumerate(configs):
                daemons.append(DaemonProcess(config, tmp_path / f"daemon-{n}.log").start())
            events = 1500
            for start in range(0, events, 100):  # in several commits, as capture writes them
                with engine.begin() as conn:
                    emit_many(
                        conn,
                        [
                            Event("record.created", f"record:{n}", {"id": n})
                            for n in range(start, start + 100)
                        ],
                    )
            took = wait_until(
                lambda: len(set(crm.delivered_ids())) == events,
                60,
                "every event at the live endpoint",
            )
            time.sleep(1.0)  # anything sent twice would have landed by now
            assert crm.repeats() == {}
            assert crm.bad_signatures == 0
            assert took < 30, took  # the hung endpoint's timeouts held nothing up

            def metric(port: int, line_start: str) -> float:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as answer:
                    text = answer.read().decode()
                found = [ln for ln in text.splitlines() if ln.startswith(line_start)]
                return sum(float(ln.rsplit(" ", 1)[1]) for ln in found)

            # Each daemon delivered a share; together exactly the events.
            shares = [metric(p, 'syncd_webhook_delivered_total{webhook="crm"}') for p in ports]
            assert sum(shares) == events and all(shares), shares
            wait_until(
                lambda: (
                    sum(
                        metric(p, 'syncd_webhook_failures_total{kind="timeout",webhook="hung"}')
                        for p in ports
                    )
                    >= 1
                ),
                20,
                "the hung endpoint's timeouts counted",
            )
            wait_until(
                lambda: max(metric(p, 'syncd_webhook_pending{webhook="hung"}') for p in ports) > 0,
                20,
                "the hung endpoint's backlog shown",
            )
            stop_all(daemons)
        finally:
            for daemon in daemons:
                daemon.close()
            engine.dispose()
            hung.close()


def _out_of_order(receiver: Receiver) -> int:
    """Tasks whose ``task.created`` reached the receiver after their ``task.updated``."""
    updated_at: dict[int, int] = {}
    late = set()
    for n, arrival in enumerate(receiver.arrivals):
        task = arrival.event["data"]["id"]
        if arrival.event["type"] == "task.updated":
            updated_at.setdefault(task, n)
        elif task in updated_at:
            late.add(task)
    return len(late)


@pytest.mark.postgres
def test_a_paused_daemon_that_wakes_sends_nothing_it_lost_and_order_holds(
    tmp_path: Path, receivers: list[Receiver], pg_admin: str
) -> None:
    """Daemon A delivers 20 tasks' created-then-updated events; it is stopped (SIGSTOP) with
    requests in flight and claims in hand; daemon B takes its claims over once they run out
    (timeout = 1: a claim lasts 9 s) and delivers everything; A is woken (SIGCONT).  Before
    the fence, A sent its stale claims on waking: 60 requests for 40 events, and 12 created
    after their task's updated.  Now A sends nothing more, and only the requests on the
    wire at the pause can arrive twice."""
    from tests.servers.postgres import scratch_database

    secret = new_secret()
    (tmp_path / "crm.secret").write_text(secret)
    crm = Receiver(secret).start()
    receivers.append(crm)
    crm.reply = lambda _event: Reply(200, sleep=0.4)  # 8 senders: 20 a second at most
    daemons: list[DaemonProcess] = []
    with scratch_database(pg_admin) as url:
        engine = open_database(url)
        try:
            config = tmp_path / "syncd.toml"
            config.write_text(
                f'[database]\nurl = "{url}"\n\n[[webhook]]\nname = "crm"\nurl = "{crm.url}"\n'
                f'secret_file = "{tmp_path / "crm.secret"}"\ntimeout = 1\n'
            )
            a = DaemonProcess(config, tmp_path / "a.log").start()
            daemons.append(a)
            with engine.begin() as conn:
                emit_many(
                    conn,
                    [Event("task.created", f"task:{n}", {"id": n}) for n in range(20)]
                    + [Event("task.updated", f"task:{n}", {"id": n}) for n in range(20)],
                )
            wait_until(lambda: len(crm.arrivals) >= 8, 30, "A's first deliveries")
            a.signal(signal.SIGSTOP)
            paused_with = len(crm.arrivals)
            b = DaemonProcess(config, tmp_path / "b.log").start()
            daemons.append(b)
            wait_until(lambda: len(set(crm.delivered_ids())) == 40, 60, "B delivers everything")
            time.sleep(0.5)
            before_wake = len(crm.arrivals)
            a.signal(signal.SIGCONT)
            time.sleep(3.0)  # A renews (or records) and finds its claims gone
            requests = len(crm.arrivals)
            late = _out_of_order(crm)
            print(
                f"paused after {paused_with} arrivals; requests {requests} for 40 events; "
                f"out-of-order {late}; sent by A after waking {requests - before_wake}"
            )
            assert requests == before_wake, "the woken daemon sent what it no longer held"
            assert late == 0
            # Repeats: only what A had answered but not stored, or on the wire, at the pause.
            first = {a.webhook_id for a in crm.arrivals[: paused_with + SENDERS]}
            assert set(crm.repeats()) <= first
            assert requests - 40 <= paused_with + SENDERS
            assert crm.bad_signatures == 0
            a.signal(signal.SIGCONT)
            stop_all(daemons)
        finally:
            for daemon in daemons:
                if daemon.proc is not None and daemon.proc.poll() is None:
                    daemon.signal(signal.SIGCONT)  # a stopped process would not die of close()
                daemon.close()
            engine.dispose()
