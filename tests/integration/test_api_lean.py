"""The API's lean path and its HTTP server on a real port: ``GET /records`` with only
``customer``, ``limit`` and ``cursor`` answers what FastAPI answers (pages, problems,
metrics), anything else still goes to FastAPI; the httptools server keeps every bound the
h11 one had (header size and deadline, connection cap, pipelining, bad requests)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
import pytest
from prometheus_client import generate_latest
from uvicorn.protocols.websockets import auto as ws_auto

from syncd.api import lane as lane_module
from syncd.api import server as server_module
from syncd.api.server import ApiServer
from syncd.config_file import load_config
from syncd.metrics import Metrics
from tests.conftest import World
from tests.mail import make_message
from tests.servers.sample import CUSTOMERS_CSV

BASE = datetime(2024, 6, 3, 9, 0, tzinfo=UTC)
# The same records as FastAPI gives them: every kind named, so the lane passes it on.
EVERY_KIND = [("kind", k) for k in ("email", "meeting", "call", "visit", "note")]


@dataclass
class Served:
    world: World
    server: ApiServer
    metrics: Metrics
    token: str
    lean_calls: list[Any]

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.server.url + "/api/v1", headers=headers, timeout=30)


@pytest.fixture
def served(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.setattr(server_module, "HEADER_SECONDS", 1.0)
    world.rep("alice")
    world.write_config(extra='[api]\nlisten = "127.0.0.1:0"\nrate_limit = 1000')
    world.customers(CUSTOMERS_CSV)
    for i in range(7):
        world.deliver(
            "alice",
            make_message(
                message_id=f"<lean-{i}@acme.com>",
                subject=f"Quote {i}",
                date=BASE + timedelta(hours=i),
                to="Rep <alice@example.com>",
                sender="Wile Coyote <wile@acme.com>",
            ),
        )
    world.cli("sync")
    calls: list[Any] = []
    answered_by_lane = lane_module.records_page

    def counted(*args: Any) -> Any:
        calls.append(args)
        return answered_by_lane(*args)

    monkeypatch.setattr(lane_module, "records_page", counted)
    metrics = Metrics()
    server = ApiServer(load_config(world.config_path), metrics).start()
    out = world.cli("tokens", "create", "reader", "--scope", "read", "--json").stdout
    try:
        yield Served(world, server, metrics, json.loads(out)["token"], calls)
    finally:
        server.stop()


def test_plain_queries_take_the_lane_and_nothing_else_does() -> None:
    plain = lane_module.plain_query
    assert plain(b"") == {}
    assert plain(b"customer=Acme%20Corp&limit=50&cursor=abc") == {
        "customer": "Acme Corp",
        "limit": "50",
        "cursor": "abc",
    }
    for query in (
        b"limit=0", b"limit=050", b"limit=+5", b"limit=1001", b"limit=%205", b"limit=five",
        b"customer=", b"customer=a&customer=b", b"kind=email", b"q=quote", b"customer=x&since=2024",
        b"customer=" + b"x" * 301, b"cursor=" + b"c" * 501,
    ):  # fmt: skip
        assert plain(query) is None, query
    assert plain(b"limit=1000&customer=" + b"x" * 300) is not None


def test_lean_answers_are_fastapi_s(served: Served) -> None:
    with served.client() as http:
        for params in ({"customer": "Acme Corp", "limit": 3}, {"limit": 2}, {}):
            lean = http.get("/records", params=params)
            full = http.get("/records", params=[*params.items(), *EVERY_KIND])
            assert lean.status_code == full.status_code == 200
            assert lean.content == full.content
            assert lean.headers["content-type"] == full.headers["content-type"]
        # Paging by the lean path reaches every record once, as FastAPI's does.
        seen: list[int] = []
        cursor = None
        while True:
            query: dict[str, Any] = {"customer": "Acme Corp", "limit": 2}
            if cursor:
                query["cursor"] = cursor
            body = http.get("/records", params=query).json()
            seen.extend(r["id"] for r in body["items"])
            cursor = body["next_cursor"]
            if cursor is None:
                break
        whole = http.get("/records", params=[("customer", "Acme Corp"), *EVERY_KIND]).json()
        assert seen == [r["id"] for r in whole["items"]] and len(seen) == 7
        # Problems: the same documents as FastAPI's handlers give.
        for params in ({"customer": "Nobody Inc"}, {"cursor": "not-a-cursor"}):
            lean = http.get("/records", params=params)
            full = http.get("/records", params=[*params.items(), *EVERY_KIND])
            assert lean.status_code == full.status_code and lean.status_code in (404, 422)
            assert lean.json() == full.json()
            assert lean.headers["content-type"] == "application/problem+json"
        # Outside the lane, FastAPI validates as always.
        refused = http.get("/records", params={"limit": 0})
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["field"] == "query.limit"
    no_token = httpx.get(served.server.url + "/api/v1/records?limit=5")
    assert no_token.status_code == 401 and no_token.headers["www-authenticate"]
    assert no_token.json()["status"] == 401
    lean_requests = 3 + 4 + 2 + 1  # the plain ones above, the paging, the problems, no token
    assert len(served.lean_calls) == lean_requests - 1  # no token: refused before the read
    text = generate_latest(served.metrics.registry).decode()
    assert 'method="GET",route="/api/v1/records",status="200"' in text
    assert 'method="GET",route="/api/v1/records",status="401"' in text


def test_a_nul_names_no_customer_on_either_engine(served: Served) -> None:
    # PostgreSQL cannot compare a NUL: the shared lookup answered it with a 500 there.
    with served.client() as http:
        for nul in ("\x00", "Acme\x00Corp"):
            lean = http.get("/records", params={"customer": nul})
            full = http.get("/records", params=[("customer", nul), *EVERY_KIND])
            tasks = http.get("/tasks", params={"customer": nul})
            one = http.get("/customers/" + nul.replace("\x00", "%00"))
            for answer in (lean, full, tasks, one):
                assert answer.status_code == 404, answer.text
                assert answer.json()["type"].endswith("/not-found")
            assert lean.json() == full.json()


def _answer(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
    return got


def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_headers_over_the_limit_are_refused_with_431(served: Served) -> None:
    with socket.create_connection(("127.0.0.1", served.server.port)) as sock:
        # A head that grows a line at a time, never ending, up to just past the limit.
        sock.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n")
        filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"
        for _ in range(server_module.MAX_HEADER_BYTES // len(filler) + 1):
            sock.sendall(filler)
        assert _answer(sock).startswith(b"HTTP/1.1 431 ")
    with socket.create_connection(("127.0.0.1", served.server.port)) as sock:
        big = b"X-Big: " + b"b" * (server_module.MAX_HEADER_BYTES + 10) + b"\r\n"
        sock.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n" + big)
        assert _answer(sock).startswith(b"HTTP/1.1 431 ")
    auth = f"Authorization: Bearer {served.token}\r\n".encode()
    lean = b"GET /api/v1/records?limit=1 HTTP/1.1\r\nHost: x\r\n" + auth
    huge = b"X-Big: " + b"b" * 100_000 + b"\r\n\r\n"
    # A whole head in one chunk: parsed to its end before the chunk is looked at.
    with socket.create_connection(("127.0.0.1", served.server.port)) as sock:
        sock.sendall(lean + huge)
        assert _answer(sock).startswith(b"HTTP/1.1 431 ")
    # A head whose last chunk ends it: the chunks before it were counted.
    with socket.create_connection(("127.0.0.1", served.server.port)) as sock:
        sock.sendall(lean + b"X-Start: " + b"s" * 10_000)
        _until(lambda: any(c._raw >= 10_000 for c in served.server.connections))
        sock.sendall(b"\r\n" + huge)
        assert _answer(sock).startswith(b"HTTP/1.1 431 ")
    # A head past the limit after a pipelined request: that one answered first, in order.
    with socket.create_connection(("127.0.0.1", served.server.port)) as sock:
        sock.sendall(lean + b"\r\n" + lean + huge)
        head, rest = _answer(sock).split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200 ")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        assert rest[length:].startswith(b"HTTP/1.1 431 ")
    assert len(served.lean_calls) == 1  # no refused head reached the handler
    # Headers just under the limit are read as usual.
    with socket.create_connection(("127.0.0.1", served.server.port)) as sock:
        fits = b"X-Fits: " + b"c" * (server_module.MAX_HEADER_BYTES - 200) + b"\r\n"
        sock.sendall(
            b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + fits + b"\r\n"
        )
        assert _answer(sock).startswith(b"HTTP/1.1 401 ")


def test_the_oldest_idle_connections_are_closed_past_the_cap(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "MAX_CONNECTIONS", 5)
    port = served.server.port
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
    try:
        with served.client() as http:
            assert http.get("/status").status_code == 200
        for sock in idle[:4]:  # the 4 oldest made room (the client's own connection is 9th)
            assert _answer(sock) == b""
        assert len(served.server.connections) <= 5
    finally:
        for sock in idle:
            sock.close()


def test_pipelined_requests_and_bad_requests(served: Served) -> None:
    auth = f"Authorization: Bearer {served.token}\r\n".encode()
    with socket.create_connection(("127.0.0.1", served.server.port)) as sock:
        one = b"GET /api/v1/records?limit=1 HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"
        last = b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + auth + b"\r\n"
        sock.sendall(one + one + last)
        answers = _answer(sock)
        assert answers.count(b"HTTP/1.1 200 ") == 3
    with socket.create_connection(("127.0.0.1", served.server.port)) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert _answer(sock).startswith(b"HTTP/1.1 400 ")
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", served.server.port)) as sock:
        sock.sendall(b"GET /api/v1/status HTTP/1.1\r\n")  # and never the rest
        assert _answer(sock) == b""  # cut off after HEADER_SECONDS (1 s here)
    assert time.monotonic() - started < 4


def test_stopping_runs_no_queued_read_and_ends_in_time(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_read = 2.0  # each lean read: 16 of them queue behind the 4 readers
    started: list[float] = []
    answered_by_lane = lane_module.records_page

    def slow(*args: Any) -> Any:
        started.append(time.monotonic())
        time.sleep(slow_read)
        return answered_by_lane(*args)

    monkeypatch.setattr(lane_module, "records_page", slow)

    def ask(_: int) -> int | None:
        try:
            with served.client() as http:
                return http.get("/records", params={"limit": 1}).status_code
        except httpx.HTTPError:
            return None  # cut off by the shutdown

    with ThreadPoolExecutor(16) as pool:
        answers = [pool.submit(ask, n) for n in range(16)]
        tasks = served.server._server.server_state.tasks
        _until(lambda: len(tasks) == 16 and len(started) == 4)
        began = time.monotonic()
        served.server.stop()
        stopped = time.monotonic()
        asked = [answer.result() for answer in answers]
    # Before: every queued read ran first, each join blocked the event loop (11 s for
    # 3 s reads) and the server's thread outlived stop().
    assert stopped - began < 3 * slow_read
    assert not served.server.alive
    assert not [t for t in threading.enumerate() if t.name.startswith("api-read")]
    assert all(t < stopped for t in started) and len(started) <= 8
    assert len(asked) == 16


class _WebSocket(asyncio.Protocol):
    """Stands for a WebSocket library installed some day (uvicorn's "auto" takes any)."""

    made: ClassVar[list[_WebSocket]] = []

    def __init__(self, **_: Any) -> None:
        self.made.append(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


def test_no_connection_is_upgraded_to_a_websocket(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws_auto, "AutoWebSocketsProtocol", _WebSocket)
    monkeypatch.setattr(_WebSocket, "made", [])
    server = ApiServer(load_config(served.world.config_path)).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(
                b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                + f"Authorization: Bearer {served.token}\r\n\r\n".encode()
            )
            sock.settimeout(5)
            got = b""
            while b"\r\n\r\n" not in got and (chunk := sock.recv(65536)):
                got += chunk
        assert got.startswith(b"HTTP/1.1 200 "), got[:100]  # answered as plain HTTP
        assert _WebSocket.made == []
    finally:
        server.stop()
