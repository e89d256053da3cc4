"""Signing and sending one webhook request: Standard Webhooks headers, TLS verified.

The standard library's ``http.client`` with a keep-alive connection per sending thread:
a backlog drains at thousands of requests a second on one connection each, where a new TLS
handshake per event would cost more than the event.  Certificates are verified against the
system's CAs plus the endpoint's ``ca_file``.  Nothing here logs; errors carry no header
(the signature) and no secret.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from standardwebhooks import Webhook

from syncd import __version__
from syncd.config import WebhookConfig
from syncd.errors import CredentialsError
from syncd.secrets import read_secret
from syncd.webhooks.policy import Answer, parse_retry_after, snippet

# What post() answers when ``may_start`` said no: nothing was sent (a stale claim).
NOT_STARTED = Answer(None, "not sent: the claim was not renewed in time")
MAX_ANSWER = 64 * 1024  # an answer longer than this is not read to its end: the connection goes
WATCH_EVERY = 0.25  # seconds between the watchdog's looks at requests past their deadline


def deadline_for(timeout: float) -> float:
    """A whole request's limit.  ``timeout`` bounds each socket operation only: a receiver
    sending its answer a byte every few seconds would hold a sender (and, claims being
    renewed, its delivery) for ever."""
    return 2 * timeout + 1.0


def load_signer(config: WebhookConfig) -> Webhook:
    """The endpoint's signer, from its secret; CredentialsError (never quoting it) if unusable."""
    what = f"webhook {config.name}"
    secret = read_secret(config.secret_source(), what=what, key="secret")
    key = secret.strip()
    if not key.startswith("whsec_"):
        raise CredentialsError(
            f'{what}: the secret is not a Standard Webhooks secret ("whsec_<base64>")',
            hint='generate one, e.g. python3 -c "import base64,os; '
            "print('whsec_' + base64.b64encode(os.urandom(32)).decode())\"",
        )
    encoded = key[len("whsec_") :].rstrip("=")
    try:
        decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) < 16:
        raise CredentialsError(
            f"{what}: the secret after whsec_ is not base64 of at least 16 bytes",
            hint="use the secret exactly as the receiver gave it",
        )
    return Webhook(decoded)


class _OneWrite(http.client.HTTPConnection):
    """Sends a request's headers and body in one write, after one last ``may_start``.

    ``http.client`` writes the headers, then the body: a daemon stopped between the two
    (SIGSTOP, a frozen VM) left the receiver waiting for a body that came only when it woke,
    after another daemon had sent that event and the next one of its record.  One write
    leaves no such gap, and the check that the claim is still ours comes just before it."""

    _held: list[bytes] | None = None

    def send(self, data: Any) -> None:
        if self._held is not None:
            self._held.append(bytes(data))
            return
        super().send(data)

    def request_once(
        self,
        target: str,
        body: bytes,
        headers: dict[str, str],
        may_start: Callable[[], bool] | None,
    ) -> bool:
        """POST in one write; False (nothing sent) when ``may_start`` says no."""
        self._held = []
        try:
            self.request("POST", target, body=body, headers=headers)
            data = b"".join(self._held)
        finally:
            self._held = None
        if self.sock is None:
            self.connect()  # a new connection's handshake comes before the last check too
        if may_start is not None and not may_start():
            self.close()  # the request was half made: this connection is done with
            return False
        super().send(data)
        return True


class _OneWriteTLS(_OneWrite, http.client.HTTPSConnection):
    pass


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()  # the system's CAs, hostname checked
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)  # trusted besides them
    return context


class Sender:
    """POSTs signed bodies to one endpoint; safe to call from several threads at once."""

    def __init__(self, config: WebhookConfig, signer: Webhook) -> None:
        parsed = urlsplit(config.url)
        assert parsed.hostname is not None  # the config checked it
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname
        self._port = parsed.port or (443 if self._https else 80)
        self._target = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        # user:password in the URL is sent as HTTP Basic authentication (RFC 7617), as
        # curl and browsers do; http.client alone would drop it silently.
        self._auth: str | None = None
        if parsed.username is not None or parsed.password is not None:
            pair = f"{unquote(parsed.username or '')}:{unquote(parsed.password or '')}"
            self._auth = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
        self._timeout = config.timeout
        self._context = _tls_context(config.ca_file) if self._https else None
        self._signer = signer
        self._local = threading.local()
        self._open: set[http.client.HTTPConnection] = set()
        self._lock = threading.Lock()
        # Requests under way (connection -> monotonic deadline), and those cut off.
        self._busy: dict[http.client.HTTPConnection, float] = {}
        self._cut: set[http.client.HTTPConnection] = set()
        self._closed = threading.Event()
        self._watchdog: threading.Thread | None = None

    def post(
        self,
        message_id: str,
        body: bytes,
        *,
        now: datetime | None = None,
        may_start: Callable[[], bool] | None = None,
    ) -> Answer:
        """POST ``body``; ``may_start`` is asked right before the request goes out (and
        before a second try): when it says no, nothing is sent and NOT_STARTED comes back."""
        stamp = (now or datetime.now(UTC)).replace(microsecond=0)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"syncd/{__version__}",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": self._signer.sign(message_id, stamp, body.decode("utf-8")),
        }
        if self._auth is not None:
            headers["Authorization"] = self._auth
        started = time.monotonic()
        reused = getattr(self._local, "conn", None) is not None
        answer = self._attempt(body, headers, started, may_start)
        if reused and answer.status is None and answer.error == "closed":
            # The receiver closed an idle keep-alive connection under us: once more, anew.
            answer = self._attempt(body, headers, time.monotonic(), may_start)
        if answer.error == "closed":
            answer = Answer(
                None, "network: connection closed without an answer", seconds=answer.seconds
            )
        return answer

    def _attempt(
        self,
        body: bytes,
        headers: dict[str, str],
        started: float,
        may_start: Callable[[], bool] | None,
    ) -> Answer:
        conn = self._connection()
        self._watch(conn, started + deadline_for(self._timeout))
        try:
            answer = self._exchange(conn, body, headers, started, may_start)
        finally:
            with self._lock:
                self._busy.pop(conn, None)
                cut = conn in self._cut
                self._cut.discard(conn)
        if cut:
            self._drop(conn)
            return Answer(
                None,
                f"timeout: no whole answer within {deadline_for(self._timeout):g} s",
                seconds=time.monotonic() - started,
            )
        return answer

    def _watch(self, conn: http.client.HTTPConnection, deadline: float) -> None:
        with self._lock:
            self._busy[conn] = deadline
            if self._watchdog is None:
                self._watchdog = threading.Thread(
                    target=self._cut_late, name="webhook-watchdog", daemon=True
                )
                self._watchdog.start()

    def _cut_late(self) -> None:
        """Shut the socket of every request past its deadline (its read then ends)."""
        while not self._closed.wait(WATCH_EVERY):
            now = time.monotonic()
            with self._lock:
                late = [c for c, d in self._busy.items() if d < now and c not in self._cut]
                self._cut.update(late)
            for conn in late:
                sock = conn.sock
                if sock is not None:
                    with contextlib.suppress(OSError):  # closed meanwhile: nothing to cut
                        sock.shutdown(socket.SHUT_RDWR)

    def _exchange(
        self,
        conn: _OneWrite,
        body: bytes,
        headers: dict[str, str],
        started: float,
        may_start: Callable[[], bool] | None = None,
    ) -> Answer:
        try:
            if not conn.request_once(self._target, body, headers, may_start):
                self._drop(conn)
                return NOT_STARTED
            response = conn.getresponse()
            raw = response.read(MAX_ANSWER)
            if not response.isclosed() or response.will_close:
                self._drop(conn)
            return Answer(
                response.status,
                retry_after=parse_retry_after(response.getheader("Retry-After")),
                snippet=snippet(raw),
                seconds=time.monotonic() - started,
            )
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self._drop(conn)
            return Answer(None, "closed", seconds=time.monotonic() - started)
        except TimeoutError:
            self._drop(conn)
            return Answer(None, "timeout", seconds=time.monotonic() - started)
        except ConnectionRefusedError:
            self._drop(conn)
            return Answer(None, "refused: connection refused", seconds=time.monotonic() - started)
        except ssl.SSLError as err:
            self._drop(conn)
            reason = (
                getattr(err, "verify_message", None) or getattr(err, "reason", None) or "handshake"
            )
            return Answer(None, f"tls: {reason}", seconds=time.monotonic() - started)
        except (OSError, http.client.HTTPException) as err:
            self._drop(conn)
            return Answer(
                None, f"network: {type(err).__name__}", seconds=time.monotonic() - started
            )

    def _connection(self) -> _OneWrite:
        conn: _OneWrite | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._context is not None:
                conn = _OneWriteTLS(
                    self._host, self._port, timeout=self._timeout, context=self._context
                )
            else:
                conn = _OneWrite(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
            with self._lock:
                self._open.add(conn)
        return conn

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with self._lock:
            self._open.discard(conn)

    def close(self) -> None:
        """Close every connection (of every thread): the endpoint is stopped or reconfigured."""
        self._closed.set()
        with self._lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            conn.close()
