"""Prometheus metrics and /healthz for `syncd run` ([metrics] listen = "host:port").

Labels are source names and error kinds only: never an address, a subject or a secret.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.records = Counter(
            "syncd_records_captured",
            "Communication records created (emails, meeting occurrences).",
            ["source", "kind"],
            registry=self.registry,
        )
        self.errors = Counter(
            "syncd_sync_errors",
            "Failed syncs, by what to do next (transient, refused, credentials, config).",
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
        self.unaccounted = Gauge(
            "syncd_unaccounted_messages",
            "Messages and events on the server that the last verify could not account for.",
            ["source"],
            registry=self.registry,
        )

    def synced(
        self, source: str, kind: str, created: int, seconds: float, error: str | None
    ) -> None:
        self.duration.labels(source).observe(seconds)
        if created:
            self.records.labels(source, kind).inc(created)
        if error is None:
            self.last_success.labels(source).set(time.time())
        else:
            self.errors.labels(source, error).inc()


class MetricsServer:
    """/metrics in the Prometheus text format; /healthz answers 200 while ``healthy()``."""

    def __init__(self, address: tuple[str, int], metrics: Metrics, healthy: Callable[[], bool]):
        registry = metrics.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/metrics":
                    self._answer(200, CONTENT_TYPE_LATEST, generate_latest(registry))
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

        self._server = ThreadingHTTPServer(address, Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
