"""The metrics listener under a flood of idle connections, with real sockets on loopback.

The server runs in its own process with the file-descriptor limit systemd gives a service
by default (1,024), so what the flood costs it is measured in /proc, as an admin would see it.
"""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.core import GaugeMetricFamily

from syncd import metrics
from syncd.metrics import Metrics, MetricsServer
from tests.conftest import World
from tests.daemon import DaemonProcess, wait_until
from tests.mail import make_message
from tests.recorder import Recorder
from tests.servers.dovecot import Dovecot
from tests.servers.ports import free_port
from tests.servers.sample import CUSTOMERS_CSV

IDLE_CONNECTIONS = 1100
TIMEOUT = 1.5  # seconds, the server's per-connection deadline in this test

_SERVER = f"""
import resource, sys, threading
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
from syncd import metrics
from tests.servers.dovecot import Dovecot
from tests.servers.ports import free_port
from tests.servers.sample import CUSTOMERS_CSV
from syncd.metrics import Metrics, MetricsServer
from tests.conftest import World
from tests.daemon import DaemonProcess, wait_until
from tests.mail import make_message
from tests.recorder import Recorder
server = MetricsServer(("127.0.0.1", 0), Metrics(), lambda: True, timeout={TIMEOUT}).start()
print(server.port, flush=True)
threading.Event().wait()
"""


@pytest.fixture
def server_process() -> Iterator[tuple[subprocess.Popen[str], int]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip().isdigit(), proc.stderr.read() if proc.stderr else line
    yield proc, int(line)
    proc.kill()
    proc.wait(timeout=10)


def _get(port: int, path: str) -> tuple[int, bytes, float]:
    started = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
        return response.status, response.read(), time.monotonic() - started


def _held(pid: int) -> tuple[int, int]:
    """File descriptors and threads of the server process."""
    proc = Path(f"/proc/{pid}")
    return len(list((proc / "fd").iterdir())), len(list((proc / "task").iterdir()))


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, TimeoutError):
        return False


def test_idle_connections_cannot_exhaust_the_listener(
    server_process: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = server_process
    fds_before, threads_before = _held(proc.pid)
    idle: list[socket.socket] = []
    try:
        for _ in range(IDLE_CONNECTIONS):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(0.5)  # let the server accept what it will
        status, body, took = _get(port, "/healthz")
        assert (status, body) == (200, b"ok\n")
        assert took < 1.0, f"/healthz took {took:.2f}s under {IDLE_CONNECTIONS} idle connections"
        status, body, took = _get(port, "/metrics")
        assert status == 200 and b"syncd_sources" in body and took < 1.0
        fds, threads = _held(proc.pid)
        # The cap (16) bounds both, whatever the number of idle peers.
        assert fds - fds_before <= 20, fds
        assert threads - threads_before <= 20, threads
        # Every idle connection is closed by the server: the excess at once, the served ones
        # at their deadline.
        deadline = time.monotonic() + TIMEOUT + 3.0
        for sock in idle:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            assert _closed_by_peer(sock), "an idle connection outlived the timeout"
        time.sleep(0.3)
        assert _held(proc.pid)[0] <= fds_before + 1
    finally:
        for sock in idle:
            sock.close()


def test_a_trickling_peer_is_cut_at_the_connection_deadline() -> None:
    server = MetricsServer(("127.0.0.1", 0), Metrics(), lambda: True, timeout=1.0).start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        started = time.monotonic()
        sock.sendall(b"GET /metrics HTTP/1.0\r\n")
        closed = False
        # One header byte every 0.3 s resets a per-read timeout forever; the deadline holds.
        while time.monotonic() - started < 4.0:
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sock.settimeout(0.3)
            try:
                if sock.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
        assert closed, "the trickling connection was never closed"
        assert time.monotonic() - started < 2.5
        wait_until(lambda: server.connections == 0, 2.0, "the slot to be freed")
        sock.close()
    finally:
        server.stop()


class _SlowCollector:
    """Renders as slowly as 3,000 sources' metrics do on a loaded machine."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def collect(self) -> Iterator[GaugeMetricFamily]:
        time.sleep(self.seconds)
        yield GaugeMetricFamily("syncd_slow_render", "A metric that takes long to render.", 1.0)


def test_a_scrape_slower_to_render_than_the_deadline_is_answered() -> None:
    """The connection deadline is for the peer (its request, then taking the answer), not
    for the daemon's own rendering: a scrape of a daemon holding thousands of sources took
    over 5 s under load, and was cut with no answer (bench/fleet.py at 10,000 x 4)."""
    registry = Metrics()
    registry.registry.register(_SlowCollector(3 * 0.5))
    server = MetricsServer(("127.0.0.1", 0), registry, lambda: True, timeout=0.5).start()
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            assert b"syncd_slow_render 1.0" in response.read()
        wait_until(lambda: server.connections == 0, 2.0, "the slot to be freed")
    finally:
        server.stop()


def test_a_non_loopback_bind_is_warned_about(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    monkeypatch.setattr(metrics, "log", recorder)
    public = MetricsServer(("0.0.0.0", 0), Metrics(), lambda: True)  # noqa: S104 - the case under test
    public.stop()
    local = MetricsServer(("127.0.0.1", 0), Metrics(), lambda: True)
    local.stop()
    warned = [e for e in recorder.events if e[1] == "metrics.public_listener"]
    assert len(warned) == 1 and warned[0][0] == "warning"
    assert str(warned[0][2]["listen"]).startswith("0.0.0.0:")


@pytest.mark.dovecot
@pytest.mark.daemon
def test_syncd_run_keeps_answering_and_capturing_under_a_flood(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    world = World(dovecot, tmp_path, f"sqlite:///{tmp_path / 'syncd.db'}")
    world.rep("alice")
    world.customers(CUSTOMERS_CSV)
    port = free_port()
    config = world.write_config(
        extra=f'[sync]\ninterval = 2\n\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
    )
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    idle: list[socket.socket] = []
    try:
        assert daemon.proc is not None
        pid = daemon.proc.pid
        # systemd's default without LimitNOFILE=: 1,024 descriptors.
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (1024, 1024))
        fds_before, threads_before = _held(pid)
        for _ in range(IDLE_CONNECTIONS):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        status, body, took = _get(port, "/healthz")
        assert (status, body) == (200, b"ok\n") and took < 1.0
        fds, threads = _held(pid)
        assert fds - fds_before <= 20 and threads - threads_before <= 20, (fds, threads)
        # The daemon still does its job: the watchdog is fed, and mail is captured.
        pings = sum(1 for m in daemon.messages if m.get("WATCHDOG") == "1")
        daemon.wait_for_message(
            lambda m: (
                m.get("WATCHDOG") == "1"
                and sum(1 for x in daemon.messages if x.get("WATCHDOG") == "1") > pings
            ),
            10,
        )
        world.deliver("alice", make_message(message_id="<flood@acme.com>"))
        wait_until(lambda: len(world.records()) == 1, 30, "the message, during the flood")
        assert daemon.stop()[0] == 0
    finally:
        for sock in idle:
            sock.close()
        daemon.close()
