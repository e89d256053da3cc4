"""JSON over HTTP for the CRM connectors: one keep-alive connection, TLS verified, bounded time.

A CRM's REST API is called a few times per record, so the connection is kept open (a new TLS
handshake per record would cost more than the record).  Each socket operation has
``timeout``; the whole exchange has a deadline, checked between reads, so an answer dripping
a byte at a time cannot hold a sender.  Answers are read up to ``MAX_ANSWER`` bytes.

Failures are classified here, at the edge: 429 and 5xx, resets and timeouts are
``TransientError`` (with the server's Retry-After); 401 and 403 are ``CredentialsError``;
other 4xx come back as an ``Answer`` for the caller to judge (a refused object is failed
alone, not retried).  Only idempotent requests are retried inline (``REQUEST``): a POST is
retried by the caller, who looks for an earlier copy first.  Nothing here logs; errors
never carry the token: an answer that echoes the request (a proxy quoting the Authorization
header, a 400 quoting its input) has every spelling of the token cut out before anyone reads
it, since a refusal's text goes to the log, ``crm_deliveries`` and `syncd crm list`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from syncd import __version__
from syncd.connectors.retry import REQUEST, parse_retry_after
from syncd.errors import CredentialsError, RefusedError, RemoteConfigError, TransientError
from syncd.redaction import REDACTED, spellings

MAX_ANSWER = 4 * 1024 * 1024  # a page of a hundred accounts is well under this


def deadline_for(timeout: float) -> float:
    """A whole exchange's limit: ``timeout`` bounds each socket operation only."""
    return 2 * timeout + 1.0


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: Any  # parsed JSON, or the text when it is not JSON
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def said(self, limit: int = 500) -> str:
        """The answer as ``crm list`` shows a refusal: status and the start of the body."""
        text = self.body if isinstance(self.body, str) else json.dumps(self.body, default=str)
        return f"{self.status} {text[:limit]}"


class JsonHttp:
    """Requests to one base URL with a bearer token.  Not thread-safe: one per worker."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        ca_file: str | None = None,
        what: str = "crm",
    ) -> None:
        parts = urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._token = token
        # Worked out once: every answer is searched for them (longest first: a longer
        # spelling holds a shorter one).
        self._spellings = sorted(spellings(token), key=len, reverse=True)
        self._timeout = timeout
        self._what = what
        self._context: ssl.SSLContext | None = None
        if self._https:
            self._context = ssl.create_default_context(cafile=None)
            if ca_file:
                self._context.load_verify_locations(cafile=ca_file)
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._https:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout, context=self._context
                )
            else:
                self._conn = http.client.HTTPConnection(
                    self._host, self._port, timeout=self._timeout
                )
        return self._conn

    # --- requests ---------------------------------------------------------------------------

    def get(self, path: str, params: dict[str, Any] | None = None) -> Answer:
        return REQUEST.call(lambda: self.once("GET", path, params=params))

    def delete(self, path: str) -> Answer:
        return REQUEST.call(lambda: self.once("DELETE", path))

    def put(self, path: str, body: dict[str, Any]) -> Answer:
        return REQUEST.call(lambda: self.once("PUT", path, body=body))

    def patch(self, path: str, body: dict[str, Any]) -> Answer:
        return REQUEST.call(lambda: self.once("PATCH", path, body=body))

    def post(self, path: str, body: dict[str, Any]) -> Answer:
        """One try: a POST that timed out may have created its object."""
        return self.once("POST", path, body=body)

    def once(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Answer:
        url = self._prefix + path + (("?" + urlencode(params)) if params else "")
        payload = json.dumps(body).encode() if body is not None else None
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
            "User-Agent": f"syncd/{__version__}",
        }
        if payload is not None:
            headers["Content-Type"] = "application/json"
        deadline = time.monotonic() + deadline_for(self._timeout)
        where = f"{self._what}: {method} {path}"
        for fresh in (False, True):
            conn = self._connection()
            try:
                conn.request(method, url, body=payload, headers=headers)
                response = conn.getresponse()
                raw = _read_bounded(response, deadline, where)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as err:
                # A kept-alive connection the server closed meanwhile: once more on a new one.
                self.close()
                if fresh:
                    raise TransientError(
                        f"{where}: connection lost ({type(err).__name__})"
                    ) from None
                continue
            except ConnectionRefusedError:
                self.close()
                raise RefusedError(
                    f"{where}: connection refused", hint="is the CRM running at its url?"
                ) from None
            except ssl.SSLCertVerificationError:
                self.close()
                raise RemoteConfigError(
                    f"{where}: the server's TLS certificate is not trusted",
                    hint="fix the certificate, or name the CA that signed it in ca_file",
                ) from None
            except TimeoutError:
                self.close()
                raise TransientError(f"{where}: timed out") from None
            except (OSError, http.client.HTTPException) as err:
                self.close()
                raise TransientError(f"{where}: {type(err).__name__}") from None
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            text = raw.decode("utf-8", "replace")
            for spelling in self._spellings:
                if spelling in text:
                    text = text.replace(spelling, REDACTED)
            return _judge(where, response.status, text, response.getheader("Retry-After"))
        raise AssertionError("unreachable")


def _read_bounded(response: http.client.HTTPResponse, deadline: float, where: str) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError
        chunk = response.read1(65536) if response.length != 0 else b""
        if not chunk:
            response.read()  # marks the answer done, so the connection can be used again
            return b"".join(parts)
        size += len(chunk)
        if size > MAX_ANSWER:
            raise TransientError(f"{where}: answer over {MAX_ANSWER:,} bytes")
        parts.append(chunk)


def _judge(where: str, status: int, text: str, retry_after: str | None) -> Answer:
    try:
        body: Any = json.loads(text) if text else None
    except ValueError:
        body = text
    answer = Answer(status, body, parse_retry_after(retry_after))
    if status == 429 or status >= 500:
        raise TransientError(f"{where}: {answer.said(200)}", retry_after=answer.retry_after)
    if status in (401, 403):
        raise CredentialsError(
            f"{where}: the CRM refused the token ({status})",
            hint="check the token (crm token_file/token_env/token_command) and its permissions",
        )
    return answer
