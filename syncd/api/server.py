"""The API's HTTP server: uvicorn (httptools) in a thread of its own, with bounds a public
listener needs.

- Headers: at most ``MAX_HEADER_BYTES`` (431 past it) and ``HEADER_SECONDS`` to arrive,
  on a new connection and between requests (uvicorn's keep-alive timeout only runs while
  no byte comes, so a client sending a byte now and then would hold a connection for
  ever).
- Connections: at most ``MAX_CONNECTIONS``; past it the oldest idle one is closed, so a
  client holding a thousand idle sockets takes nothing from the others (an idle socket
  costs the event loop a few KB, no thread).  Requests in progress: ``MAX_REQUESTS``, then
  503.
- Bodies: 1 MB and 30 s (syncd/api/app.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from syncd.api.app import LEAN_THREADS, create_app
from syncd.api.workers import Workers
from syncd.config import ApiConfig, Config
from syncd.logs import get_logger
from syncd.metrics import Metrics
from syncd.store.database import make_engine

log = get_logger("syncd.api")

HEADER_SECONDS = 10.0
KEEP_ALIVE_SECONDS = 5
MAX_HEADER_BYTES = 16 * 1024
MAX_CONNECTIONS = 512
MAX_REQUESTS = 256  # in progress at once, long polls included
POOL_SIZE = 16  # database connections of the API: its handler threads, the feed's watch, spare
MIN_POOL = 4  # a process's share of POOL_SIZE when several serve the API, at least
BACKLOG = 1024


class _Coalescing:
    """The connection's transport as the protocol writes to it: what is written in one turn
    of the event loop (a response's head, then its body) leaves in one send.  On loopback
    each send also does the receiving side's TCP work: two a response were a quarter of
    the server's time under load (py-spy).  Anything else goes to the transport itself."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _HeadTooLarge(Exception):
    """Raised in a parser callback to stop llhttp at a head past ``MAX_HEADER_BYTES``."""


class BoundedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol (llhttp, in C: h11 parsed a request in Python for more
    CPU than the page it asked for), with the bounds h11 gave and more: a deadline and a
    size for each request's headers, and a cap on connections that closes the oldest idle
    one."""

    _deadline: asyncio.TimerHandle | None = None
    _born = 0.0
    # The head being read, counted as llhttp hands it over: its URL and finished header
    # lines (``_head``), and the chunks that came wholly inside it (``_raw``: a header line
    # that never ends reaches no callback).  Checked inside the callbacks, before uvicorn
    # makes the request's cycle: a check after the chunk is parsed comes too late when
    # the chunk also ends the head.
    _in_head = False
    _head = 0
    _raw = 0
    _began = 0  # heads begun, to tell whether a chunk is wholly inside the current one
    _ended = 0  # messages ended, likewise
    _refused = False  # 431 given or due: nothing more is read from this connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = cast(asyncio.Transport, _Coalescing(transport, self.loop))
        # asyncio sets TCP_NODELAY only on sockets whose protocol number says TCP, which a
        # listener made by socket.create_server does not: without it each keep-alive
        # answer (headers, then body: two writes) waited for the client's delayed ACK.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._born = time.monotonic()
        self._arm()
        if len(self.connections) > MAX_CONNECTIONS:
            self._evict_idle()

    def _evict_idle(self) -> None:
        """Close the oldest idle connections until at most ``MAX_CONNECTIONS`` are open.
        Ones closing already still count until the loop runs their ``connection_lost``."""
        open_ = [
            c for c in self.connections
            if isinstance(c, BoundedHttp) and not c.transport.is_closing()
        ]  # fmt: skip
        excess = len(open_) - MAX_CONNECTIONS
        if excess <= 0:
            return
        idle = sorted((c for c in open_ if c is not self and c.idle), key=lambda c: c._born)
        for connection in idle[:excess]:
            connection.transport.close()

    @property
    def idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(HEADER_SECONDS, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.idle and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self.idle:
            self._arm()  # the next request's headers: they get HEADER_SECONDS in all
        in_head = self._in_head
        between = not in_head and self._began == self._ended  # no message under way
        began, ended = self._began, self._ended
        super().data_received(data)
        if not self.idle:
            self._disarm()  # headers complete: the app's own bounds take over
        if self._refused or not self._in_head:
            return
        # A head still unfinished: the chunk counts whole when nothing else was in it (a
        # pipelined head's first chunk, shared with the request before, counts only by
        # its finished lines).
        if (in_head and self._began == began) or (between and self._ended == ended):
            self._raw += len(data)
            if self._raw > MAX_HEADER_BYTES:
                self._refuse_head()

    def on_message_begin(self) -> None:
        self._began += 1
        self._in_head = True
        self._head = self._raw = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._head += size
        if self._head > MAX_HEADER_BYTES:
            self._refuse_head()
            raise _HeadTooLarge  # stops llhttp here: no request cycle is made

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._ended += 1
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # else llhttp stopped at our own refusal, answered already
            super().send_400_response(msg)

    def _refuse_head(self) -> None:
        """431 for a head past the limit, in its turn: a response still being made for an
        earlier pipelined request goes first (its client reads the answers in order)."""
        self._refused = True
        self.flow.pause_reading()
        if self.idle and not self.pipeline:
            self._refuse(431, b"Request Header Fields Too Large")
        # else on_response_complete answers once the requests before it are answered

    def on_response_complete(self) -> None:
        if self._refused and not self.pipeline:
            self.server_state.total_requests += 1
            if not self.transport.is_closing():
                self._refuse(431, b"Request Header Fields Too Large")
            return
        super().on_response_complete()

    def _refuse(self, status: int, reason: bytes) -> None:
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\nconnection: close\r\n\r\n" % (status, reason)
        )
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


class ApiServer:
    """The API served from a thread: ``start()`` returns once it listens."""

    def __init__(
        self,
        config: Config,
        metrics: Metrics | None = None,
        *,
        sock: socket.socket | None = None,
        processes: int = 1,
    ) -> None:
        """``sock`` and ``processes``: one of the ``processes`` of syncd/api/processes.py,
        serving the listening socket their parent holds (and passed on); its share of the
        database connections, ``POOL_SIZE // processes`` (at least ``MIN_POOL``)."""
        self._api = config.api or ApiConfig()
        pool = POOL_SIZE if processes <= 1 else max(MIN_POOL, POOL_SIZE // processes)
        self._engine = make_engine(config.database.url, pool_size=pool, ping=False)
        self._reads = Workers(LEAN_THREADS)
        app = create_app(
            config, self._engine, metrics=metrics, lean_reads=self._reads, processes=processes
        )
        host, port = self._api.address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = sock or socket.create_server((host, port), family=family, backlog=BACKLOG)
        self.port = self._socket.getsockname()[1]
        tls: dict[str, Any] = {}
        if self._api.tls_cert is not None:
            tls = {"ssl_certfile": self._api.tls_cert, "ssl_keyfile": self._api.tls_key}
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                http=BoundedHttp,
                loop="asyncio",
                lifespan="on",
                log_config=None,
                access_log=False,
                server_header=False,
                ws="none",  # no WebSocket endpoint: no upgrade, whatever library is installed
                proxy_headers=False,
                timeout_keep_alive=KEEP_ALIVE_SECONDS,
                timeout_graceful_shutdown=2,
                limit_concurrency=MAX_CONNECTIONS + MAX_REQUESTS,
                backlog=BACKLOG,
                **tls,
            )
        )
        self._thread = threading.Thread(target=self._serve, name="api", daemon=True)
        scheme = "https" if tls else "http"
        shown = f"[{host}]" if ":" in host else host
        self.url = f"{scheme}://{shown}:{self.port}"

    def _serve(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        except Exception as err:  # reported; the daemon goes on capturing without its API
            log.error("api.stopped", error=type(err).__name__, detail=str(err)[:200])

    def start(self, timeout: float = 10.0) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                raise TimeoutError("the API server did not start")
            time.sleep(0.01)
        log.info("api.listening", url=self.url)
        return self

    @property
    def connections(self) -> list[BoundedHttp]:
        """The connections open now (for tests and diagnostics)."""
        return [
            c for c in list(self._server.server_state.connections) if isinstance(c, BoundedHttp)
        ]

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop within ``timeout`` in all: uvicorn's graceful shutdown for at most half of
        it, then its forced one; the engine is disposed of once the lean path's readers
        have ended (or the time is up: they are daemon threads)."""
        deadline = time.monotonic() + timeout
        self._server.should_exit = True
        self._thread.join(timeout / 2)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(max(0.0, deadline - time.monotonic()))
        self._socket.close()
        if not self._reads.stop(max(0.0, deadline - time.monotonic())):
            log.warning("api.readers_still_busy")
        if self._thread.is_alive():
            log.warning("api.still_stopping")
        self._engine.dispose()
