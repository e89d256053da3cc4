"""A real webhook receiver for the tests: verifies EVERY request's Standard Webhooks
signature with the ``standardwebhooks`` library (as receivers in the wild do) and records
what arrived.  Programmable: answer 500, 410, any status, sleep, or stop listening (then
connections are refused) and come back on the same port."""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from standardwebhooks import Webhook

from tests.servers.ports import free_port, wait_listening


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    sleep: float = 0.0


@dataclass(frozen=True)
class Arrival:
    webhook_id: str
    event: dict[str, Any]
    signature: str
    at: float  # time.monotonic()
    status: int  # what the receiver answered
    wall: float  # time.time(), to compare with another process's clock
    peer: int  # the client's port: one per keep-alive connection
    authorization: str | None = None  # the Authorization header, as sent


class Receiver:
    def __init__(self, secret: str, *, verify: bool = True, port: int | None = None) -> None:
        self.secret = secret
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        # Decides the answer to each verified event; default 200.
        self.reply: Callable[[dict[str, Any]], Reply] = lambda _event: Reply()
        self.arrivals: list[Arrival] = []
        self.bad_signatures = 0
        self._accepted = 0
        self._first_at: dict[str, float] = {}  # webhook-id -> time.time() of its first 2xx
        self.verify = verify
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- what arrived ---------------------------------------------------------------------

    def accepted(self) -> list[Arrival]:
        """Requests answered 2xx, in arrival order."""
        with self._lock:
            return [a for a in self.arrivals if 200 <= a.status < 300]

    def delivered_ids(self) -> list[int]:
        return [int(a.webhook_id) for a in self.accepted() if a.webhook_id.isdigit()]

    def repeats(self) -> dict[str, int]:
        """webhook-ids answered 2xx more than once, and how often."""
        counts = collections.Counter(a.webhook_id for a in self.accepted())
        return {k: n for k, n in counts.items() if n > 1}

    # --- life cycle -----------------------------------------------------------------------

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do
            disable_nagle_algorithm = True  # headers and body go in two writes

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                if len(raw) < length:
                    # The sender died between headers and body (kill -9 mid-request): no
                    # request to verify, nor a bad signature.
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    if receiver.verify:
                        event = Webhook(receiver.secret).verify(raw, headers)
                    else:
                        event = json.loads(raw)
                except Exception:
                    with receiver._lock:
                        receiver.bad_signatures += 1
                    self._answer(Reply(401, b"bad signature"))
                    return
                reply = receiver.reply(event)
                if reply.sleep:
                    time.sleep(reply.sleep)
                arrival = Arrival(
                    headers.get("webhook-id", ""),
                    event,
                    headers.get("webhook-signature", ""),
                    time.monotonic(),
                    reply.status,
                    time.time(),
                    self.client_address[1],
                    headers.get("authorization"),
                )
                with receiver._lock:
                    receiver.arrivals.append(arrival)
                    if 200 <= reply.status < 300:
                        receiver._accepted += 1
                        receiver._first_at.setdefault(arrival.webhook_id, arrival.wall)
                self._answer(reply)

            def do_GET(self) -> None:
                """/_stats[?id=ID]: counts (and when ID arrived) for a receiver run in another
                process (bench/webhooks.py)."""
                with receiver._lock:  # counted as requests come: O(1) however many
                    stats: dict[str, Any] = {
                        "accepted": receiver._accepted,
                        "unique": len(receiver._first_at),
                        "bad_signatures": receiver.bad_signatures,
                    }
                    if "?id=" in self.path:  # when that id was first answered 2xx
                        stats["at"] = receiver._first_at.get(self.path.split("?id=", 1)[1])
                self._answer(Reply(200, json.dumps(stats).encode()))

            def _answer(self, reply: Reply) -> None:
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128
            live: ClassVar[set[socket.socket]] = set()

            def process_request(self, request: Any, client_address: Any) -> None:
                with receiver._lock:
                    self.live.add(request)
                super().process_request(request, client_address)

            def shutdown_request(self, request: Any) -> None:
                with receiver._lock:
                    self.live.discard(request)
                super().shutdown_request(request)

        self._server = Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        wait_listening(self.port)
        return self

    def stop(self) -> None:
        """Stop listening: from now on connections to the port are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            with self._lock:  # keep-alive connections too: a stopped receiver answers nothing
                live = list(self._server.live)  # type: ignore[attr-defined]
            for sock in live:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._server = None
        wait_listening(self.port, up=False)
