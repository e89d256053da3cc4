"""A throw-away OAuth2 authorization server on loopback: a token endpoint (RFC 6749:
client-credentials and refresh-token grants) and the RFC 7662 introspection endpoint that
Dovecot's oauth2 passdb asks about the tokens it issued.

The token endpoint speaks HTTPS when given a certificate (syncd verifies it against
``ca_file``); introspection stays plain HTTP on loopback, for Dovecot.  It counts token
requests, can revoke a client secret or a refresh token, and can fail on purpose.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode


@dataclass
class TokenServer:
    clients: dict[str, str]  # client_id: client secret
    domain: str = "example.com"  # app-only tokens introspect as app@<domain>
    expires_in: int = 3600
    cert_file: Path | None = None
    key_file: Path | None = None
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # refresh token: username
    fail_with: int | None = None  # answer every token request with this HTTP status
    retry_after: str | None = None  # the Retry-After header of those failures
    raw_answer: bytes | None = None  # answer every token request with this body (HTTP 200)
    delay: float = 0.0  # seconds each token request takes
    rotate_refresh: bool = False  # each refresh answers with a new refresh token, the old one dies
    dribble: float = 0.0  # seconds between the bytes of every answer (status line included)
    echo: bool = False  # refuse every token request, quoting it (body, base64 and all)
    token_requests: list[dict[str, str]] = field(default_factory=list)  # grant_type, client_id
    issued: dict[str, str] = field(default_factory=dict)  # access token: username
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _servers: list[ThreadingHTTPServer] = field(default_factory=list)

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> TokenServer:
        token = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, self._token))
        if self.cert_file is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
            token.socket = context.wrap_socket(token.socket, server_side=True)
        introspection = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, self._introspect))
        self._servers = [token, introspection]
        for server in self._servers:
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def token_url(self) -> str:
        scheme = "https" if self.cert_file is not None else "http"
        return f"{scheme}://127.0.0.1:{self._servers[0].server_address[1]}/oauth2/token"

    @property
    def introspection_url(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}/introspect"

    # --- what tests do ----------------------------------------------------------------------

    def revoke_client(self, client_id: str) -> None:
        """The client's secret is revoked: every request with it is invalid_client."""
        with self._lock:
            self.clients[client_id] = "revoked:" + secrets.token_hex(8)

    def requests_count(self) -> int:
        with self._lock:
            return len(self.token_requests)

    # --- endpoints --------------------------------------------------------------------------

    def _token(self, headers: Any, form: dict[str, str]) -> tuple[int, dict[str, Any] | bytes]:
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        basic = headers.get("Authorization", "")
        if basic.startswith("Basic "):
            user, _, password = base64.b64decode(basic[6:]).decode().partition(":")
            client_id, secret = unquote(user), unquote(password)
        grant = form.get("grant_type", "")
        with self._lock:
            self.token_requests.append({"grant_type": grant, "client_id": client_id})
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            if self.echo:  # as some endpoints do in error_description, and proxies worse
                raw = urlencode(form)
                return 400, {
                    "error": "invalid_request",
                    "error_description": f"cannot parse {raw} (base64 "
                    f"{base64.b64encode(raw.encode()).decode()}; Basic "
                    f"{base64.b64encode(f'{client_id}:{secret}'.encode()).decode()})",
                }
            if self.raw_answer is not None:
                return 200, self.raw_answer
            if self.fail_with is not None:
                return self.fail_with, {"error": "temporarily_unavailable"}
            if self.clients.get(client_id) != secret or not secret:
                return 401, {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000222: the client secret is expired or revoked",
                }
            if grant == "client_credentials":
                user = f"app@{self.domain}"
            elif grant == "refresh_token":
                found = self.refresh_tokens.get(form.get("refresh_token", ""))
                if found is None:
                    return 400, {
                        "error": "invalid_grant",
                        "error_description": "the refresh token was revoked",
                    }
                user = found
                if self.rotate_refresh:
                    self.refresh_tokens.pop(form.get("refresh_token", ""))
                    rotated = "rt-" + secrets.token_urlsafe(12)
                    self.refresh_tokens[rotated] = user
            else:
                return 400, {"error": "unsupported_grant_type"}
            access = "at-" + secrets.token_urlsafe(24)
            self.issued[access] = user
        answer: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": form.get("scope", ""),
        }
        if grant == "refresh_token" and self.rotate_refresh:
            answer["refresh_token"] = rotated
        return 200, answer

    def _introspect(self, _headers: Any, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            user = self.issued.get(form.get("token", ""))
        if user is None:
            return 200, {"active": False}
        return 200, {"active": True, "username": user}


def self_signed(root: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost in ``root`` (cert.pem, key.pem), the names
    the test Dovecot uses for its own: one made here first serves both servers."""
    cert, key = root / "cert.pem", root / "key.pem"
    if not cert.exists():
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
        key.chmod(0o600)
    return cert, key


def _handler(server: TokenServer, answer: Any) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = min(int(self.headers.get("Content-Length", 0)), 64 * 1024)
            raw = parse_qs(self.rfile.read(length).decode())
            form = {k: v[0] for k, v in raw.items()}
            status, body = answer(self.headers, form)
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            if server.dribble:
                self._dribble(status, data)
                return
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if status >= 400 and server.retry_after is not None:
                    self.send_header("Retry-After", server.retry_after)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up waiting (a timeout test)

        def _dribble(self, status: int, data: bytes) -> None:
            """The whole answer a byte at a time: each read of the client gets one in time."""
            answer = (
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
            ).encode() + data
            try:
                for i in range(len(answer)):
                    self.wfile.write(answer[i : i + 1])
                    self.wfile.flush()
                    time.sleep(server.dribble)
            except OSError:
                pass  # the client gave up: what is being measured
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler
