"""Prometheus metrics and /healthz for `syncd run` ([metrics] listen = "host:port").

Labels are source names and error kinds only: never an address, a subject or a secret.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from syncd.config import is_loopback_host
from syncd.logs import get_logger

log = get_logger("syncd.metrics")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # Each source's labelled children of the per-poll metrics, looked up once: a quiet
        # poll then records itself without a label lookup (a lock and a tuple) per metric.
        self._per_poll: dict[str, tuple[Any, Any]] = {}
        self.records = Counter(
            "syncd_records_captured",
            "Communication records created (emails, meeting occurrences).",
            ["source", "kind"],
            registry=self.registry,
        )
        self.errors = Counter(
            "syncd_sync_errors",
            "Failed syncs, by what to do next (transient, refused, credentials, config, internal).",
            ["source", "kind"],
            registry=self.registry,
        )
        self.last_success = Gauge(
            "syncd_last_success_timestamp_seconds",
            "When the source last synced without error (Unix time).",
            ["source"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "syncd_sync_duration_seconds",
            "Time one sync of a source took.",
            ["source"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
            registry=self.registry,
        )
        self.sources = Gauge(
            "syncd_sources", "Sources by state.", ["state"], registry=self.registry
        )
        # IMAP: logins by outcome only ("ok" or the error kind), never by mailbox (thousands).
        self.imap_logins = Counter(
            "syncd_imap_logins_total",
            "IMAP logins, by outcome (ok, transient, refused, credentials, config, internal).",
            ["outcome"],
            registry=self.registry,
        )
        self.imap_reused = Counter(
            "syncd_imap_sessions_reused_total",
            "Polls that used a session kept from the previous poll (or the IDLE watch's)"
            " instead of logging in.",
            registry=self.registry,
        )
        self.watchers_open = Gauge(
            "syncd_watchers_open",
            "IMAP IDLE connections open (push), all on one selector thread.",
            registry=self.registry,
        )
        self.held = Gauge(
            "syncd_sources_held",
            "Sources whose lease this daemon holds (its share of the fleet).",
            registry=self.registry,
        )
        self.unaccounted = Gauge(
            "syncd_unaccounted_messages",
            "Messages and events on the server that the last verify could not account for.",
            ["source"],
            registry=self.registry,
        )
        # Webhooks (syncd/webhooks/), labelled by endpoint name.
        self.webhook_pending = Gauge(
            "syncd_webhook_pending", "Deliveries waiting.", ["webhook"], registry=self.registry
        )
        self.webhook_delivered = Counter(
            "syncd_webhook_delivered",
            "Events delivered (2xx).",
            ["webhook"],
            registry=self.registry,
        )
        self.webhook_failures = Counter(
            "syncd_webhook_failures",
            "Failed attempts by kind (http_5xx, http_429, http_4xx, timeout, refused, tls, expired).",
            ["webhook", "kind"],
            registry=self.registry,
        )
        self.webhook_latency = Histogram(
            "syncd_webhook_latency_seconds",
            "From an event's creation to its 2xx answer.",
            ["webhook"],
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 86400),
            registry=self.registry,
        )

        # The HTTP API (syncd/api/), by route template (never a path with an id in it).
        self.api_requests = Counter(
            "syncd_api_requests",
            "API requests answered, by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.api_latency = Histogram(
            "syncd_api_request_duration_seconds",
            "Time to answer an API request (a long-poll's wait included).",
            ["route"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
            registry=self.registry,
        )

        self.directory_reloads = Counter(
            "syncd_directory_reload",
            "Reads of the [directory] source that found a change: applied (ok) or refused (error).",
            ["result"],
            registry=self.registry,
        )

    def synced(
        self, source: str, kind: str, created: int, seconds: float, error: str | None
    ) -> None:
        children = self._per_poll.get(source)
        if children is None:  # the same children whichever thread gets here first
            children = (self.duration.labels(source), self.last_success.labels(source))
            self._per_poll[source] = children
        duration, last_success = children
        duration.observe(seconds)
        if created:
            self.records.labels(source, kind).inc(created)
        if error is None:
            last_success.set(time.time())
        else:
            self.errors.labels(source, error).inc()


# Scrapers send one short request and read one short answer.  Anything slower is a stuck
# peer or an attack: it gets this long to send its request and as long again to take the
# answer, then its socket is closed under it.  The time the daemon takes to render the
# answer is not the peer's: at thousands of sources on a loaded machine it is seconds.
CONNECTION_TIMEOUT = 5.0  # seconds, for the request, then for the answer
# Concurrent connections served; more are closed as soon as they are accepted, so idle
# sockets can never take the daemon's file descriptors or threads (one thread each).
MAX_CONNECTIONS = 16
THREAD_WAIT = 0.5  # seconds the accept loop waits for a thread to come free


class _BoundedServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a cap on live connections and a deadline for each.

    When full, the oldest connection goes, not the new one.  A scrape takes milliseconds,
    so whatever is oldest is idle; refusing newcomers instead would let a few idle sockets
    lock Prometheus and the /healthz probe out until their deadline.
    """

    daemon_threads = True
    request_queue_size = 128  # the kernel's accept queue, not connections served

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        max_connections: int,
        timeout: float,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)
        self._max = max_connections
        # Evicted connections' threads take a moment to end: threads are capped separately,
        # with room for them, so the total stays bounded however fast peers connect.
        self._thread_slots = threading.BoundedSemaphore(2 * max_connections)
        self._deadline = timeout
        self._live: dict[socket.socket, float] = {}  # connection -> monotonic deadline
        self._live_lock = threading.Lock()
        self.refused = 0  # closed at once: no thread came free in time
        self.evicted = 0  # oldest connections closed to make room for a new one
        self.timed_out = 0  # connections closed at their deadline

    def process_request(self, request: Any, client_address: Any) -> None:
        evict: socket.socket | None = None
        with self._live_lock:
            if len(self._live) >= self._max:
                evict = min(self._live, key=self._live.__getitem__)
                del self._live[evict]
            self._live[request] = time.monotonic() + self._deadline
        if evict is not None:
            self.evicted += 1
            _cut(evict)
        if not self._thread_slots.acquire(timeout=THREAD_WAIT):
            self.refused += 1
            self._forget(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: give its place back
            self._thread_slots.release()
            self._forget(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget(request)
            self._thread_slots.release()

    def _forget(self, request: socket.socket) -> None:
        with self._live_lock:
            self._live.pop(request, None)

    def answering(self, request: socket.socket) -> bool:
        """The request is read: its deadline stops while the answer is made (a daemon of
        thousands of sources takes seconds to render them on a loaded machine, and a cut
        scrape is a lost one); False when the deadline had cut it already."""
        with self._live_lock:
            return self._live.pop(request, None) is not None

    def sending(self, request: socket.socket) -> None:
        """The answer is made: the connection gets a fresh deadline to take it."""
        with self._live_lock:
            self._live[request] = time.monotonic() + self._deadline

    def service_actions(self) -> None:
        # Runs between accepts (at least every poll interval): a peer that trickles bytes
        # resets the per-read timeout forever, so the whole connection has a deadline too.
        now = time.monotonic()
        with self._live_lock:
            late = [sock for sock, deadline in self._live.items() if deadline < now]
            for sock in late:
                del self._live[sock]
        for sock in late:
            self.timed_out += 1
            _cut(sock)

    @property
    def connections(self) -> int:
        with self._live_lock:
            return len(self._live)


def _cut(sock: socket.socket) -> None:
    """End a connection under its handler: the handler's next read or write fails, its thread
    ends and closes the socket (closing it here could hand the number to a new connection)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class MetricsServer:
    """/metrics in the Prometheus text format; /healthz answers 200 while ``healthy()``."""

    def __init__(
        self,
        address: tuple[str, int],
        metrics: Metrics,
        healthy: Callable[[], bool],
        *,
        max_connections: int = MAX_CONNECTIONS,
        timeout: float = CONNECTION_TIMEOUT,
    ):
        registry = metrics.registry
        per_read = timeout

        class Handler(BaseHTTPRequestHandler):
            # Per read and write: an idle peer is dropped after this long.
            timeout = per_read

            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/metrics":
                    server = self.server
                    assert isinstance(server, _BoundedServer)
                    if not server.answering(self.request):
                        return  # cut at its deadline while the request came in
                    body = generate_latest(registry)
                    server.sending(self.request)
                    self._answer(200, CONTENT_TYPE_LATEST, body)
                elif self.path == "/healthz":
                    ok = healthy()
                    self._answer(200 if ok else 503, "text/plain", b"ok\n" if ok else b"stalled\n")
                else:
                    self._answer(404, "text/plain", b"not found\n")

            def _answer(self, code: int, kind: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every 15 s would drown the log

        host = address[0]
        if not is_loopback_host(host):
            # /metrics names every mailbox and calendar, /healthz says when syncd is down:
            # worth a firewall rule or a reverse proxy, never the open internet.
            log.warning(
                "metrics.public_listener",
                listen=f"{host or '*'}:{address[1]}",
                hint="bind 127.0.0.1 (or ::1) and scrape through a proxy, or firewall the port",
            )
        self._server = _BoundedServer(
            address, Handler, max_connections=max_connections, timeout=timeout
        )
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.25,), name="metrics", daemon=True
        )

    @property
    def connections(self) -> int:
        """Connections being served right now (at most ``max_connections``)."""
        return self._server.connections

    @property
    def refused(self) -> int:
        return self._server.refused

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which must be running
            self._server.shutdown()
        self._server.server_close()
