"""OAuth2 access tokens for XOAUTH2 logins (RFC 6749): client-credentials and refresh-token
grants against a token endpoint, with a cache that one refresh serves.

Microsoft 365 app-only IMAP access is the client-credentials grant (the token is the
service principal's; the XOAUTH2 user names the mailbox); per-user consent (Gmail) is the
refresh-token grant.  A ``TokenCache`` holds one access token until shortly before it
expires and refreshes it under a lock, so fifty mailboxes logging in at once cause one
request.  A refusal (``invalid_client``, ``invalid_grant``) is remembered: callers get the
same ``CredentialsError`` without asking the endpoint again until the secret changes or
an hour has passed, so a revoked secret never turns into a storm of requests.

Secrets (the client secret, refresh and access tokens) never appear in errors or logs:
what the endpoint says about them is cut, stripped of control characters and redacted.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

from syncd.config import OAuth2ClientConfig
from syncd.connectors import retry
from syncd.connectors.imap import tls_context
from syncd.errors import (
    CredentialsError,
    InternalError,
    RefusedError,
    RemoteConfigError,
    RemoteError,
    TransientError,
)
from syncd.logs import get_logger
from syncd.redaction import redact

log = get_logger("syncd.oauth2")

MAX_RESPONSE_BYTES = 64 * 1024  # a token answer is a few KB; a bigger one is not read
MAX_TOKEN_CHARS = 16 * 1024
EXPIRY_MARGIN = 60.0  # seconds before expires_in ends that a token is replaced
# While its replacement is being asked for, a token is still handed out until this close
# to its end: a login uses it within a second or two.
VALID_MARGIN = 5.0
DEFAULT_LIFETIME = 300.0  # seconds, when the endpoint does not say (expires_in is optional)
# How long a failure answers for the endpoint, unless the secret read next time differs:
# a refusal as long as the scheduler waits before retrying a refused login (hourly), a
# setting it rejects (or our own bug) a quarter of an hour, a passing failure a few seconds
# (enough that the mailboxes waiting for that one request do not each send their own).
REFUSED_FOR = 3600.0
CONFIG_FOR = 900.0
TRANSIENT_FOR = 5.0
# How long a login waits for the token request another mailbox has in flight.  A request
# takes well under a second, and never more than its deadline; one hanging on a dead
# endpoint keeps its own worker, and the others give up after this with a transient error
# rather than all the daemon's workers waiting on one group and starving the others.
WAIT_FOR_REQUEST = 10.0
# The Retry-After of a login that found the request in flight too long: over the inline
# retry limit (retry.RetryPolicy.max_retry_after), so the scheduler, not LOGIN, tries again.
BUSY_RETRY_AFTER = 60.0
# A 429 whose Retry-After is missing or unreadable: the endpoint asked us to slow down, so
# the group waits this long (not three requests in a second from the inline retries).
SLOW_DOWN_FOR = 60.0
# How often a client_secret_command is run again while the endpoint's refusal stands.
REREAD_COMMAND = 60.0
_CLIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client"})
# Error codes that say "later", whatever the status (Microsoft's endpoint documents
# temporarily_unavailable: "retry the request after a small delay").
_BUSY = frozenset({"temporarily_unavailable", "server_error"})


def deadline_for(timeout: float) -> float:
    """The limit of a whole token request, its retries included.  ``timeout`` bounds each
    socket operation only: an endpoint answering a byte every ``timeout - 0.1`` seconds
    would otherwise hold a login (and the group's other logins behind it) for hours."""
    return 2 * timeout + 1.0


@dataclass(frozen=True, slots=True)
class Grant:
    """The secrets of one token request, read just before it."""

    client_secret: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)

    def digest(self) -> bytes:
        """To notice a changed secret without keeping the old one."""
        material = f"{self.client_secret}\0{self.refresh_token or ''}".encode()
        return hashlib.sha256(material).digest()

    def redact(self, text: str) -> str:
        """``text`` without our secrets, in whatever encoding an endpoint echoes them."""
        return redact(text, (self.client_secret, self.refresh_token))


@dataclass(frozen=True, slots=True)
class Token:
    access_token: str = ""
    expires_at: float = 0.0  # time.monotonic() after which it is replaced, margin taken off
    refresh_token: str | None = None  # a rotated refresh token, when the endpoint sent one
    valid_until: float = 0.0  # time.monotonic() until which it may still be handed out

    def __repr__(self) -> str:  # never the token itself, whatever prints it
        return f"Token(expires_at={self.expires_at:.0f})"


class RefreshTokenStore(Protocol):
    """Where a refresh token the endpoint rotated outlives the process (the database,
    encrypted: syncd/store/refresh_tokens.py), keyed by the token configured for it."""

    def newest(self, configured: str) -> str | None: ...

    def keep(self, configured: str, newest: str) -> None: ...


def request_token(settings: OAuth2ClientConfig, grant: Grant, *, where: str) -> Token:
    """One token request, retried by the ``REQUEST`` policy when it failed transiently, all
    of it within ``deadline_for(settings.timeout)``."""
    deadline = time.monotonic() + deadline_for(settings.timeout)
    return retry.REQUEST.call(
        lambda: _post(settings, grant, where, deadline),
        should_stop=lambda: time.monotonic() >= deadline,
        on_retry=lambda err, wait: log.info(
            "oauth2.retry", group=settings.group, error=str(err), retry_in=round(wait, 2)
        ),
    )


def _connection(settings: OAuth2ClientConfig, timeout: float) -> http.client.HTTPConnection:
    """Straight to the endpoint (no proxy, like the IMAP connection); a redirect is not
    followed (it could carry the secret elsewhere): its status is the answer."""
    url = urlsplit(settings.token_url)
    host = url.hostname or ""
    if url.scheme == "https":
        return http.client.HTTPSConnection(
            host, url.port or 443, timeout=timeout, context=tls_context(settings.ca_file)
        )
    return http.client.HTTPConnection(host, url.port or 80, timeout=timeout)


def _post(settings: OAuth2ClientConfig, grant: Grant, where: str, deadline: float) -> Token:
    form = {
        "grant_type": settings.grant,
        "client_id": settings.client_id,
        "client_secret": grant.client_secret,
    }
    if settings.grant == "refresh_token":
        form["refresh_token"] = grant.refresh_token or ""
    if settings.scope:
        form["scope"] = settings.scope
    url = urlsplit(settings.token_url)
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    started = time.monotonic()
    left = deadline - started
    if left <= 0:
        raise _late(where, settings)
    conn = _connection(settings, min(settings.timeout, left))
    # At the deadline the socket is shut: whatever read is under way then ends at once.
    cut = threading.Event()
    timer = threading.Timer(left, _cut, (conn, cut))
    timer.daemon = True
    timer.start()
    try:
        conn.connect()
        if cut.is_set():  # the deadline came while connecting, before there was a socket
            raise TimeoutError
        conn.request(
            "POST",
            target,
            body=urlencode(form).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
        )
        response = conn.getresponse()
        status, headers = response.status, response.headers
        body = response.read(MAX_RESPONSE_BYTES + 1)
    except (OSError, http.client.HTTPException, ValueError) as err:
        if cut.is_set():
            raise _late(where, settings) from None
        raise _network_error(where, err) from None
    finally:
        timer.cancel()
        conn.close()
    if cut.is_set():  # the answer ended because we shut it: it is not whole
        raise _late(where, settings)
    if status >= 300:
        raise _refusal(settings, grant, where, status, body, headers) from None
    return _token(settings, grant, where, body, started)


def _cut(conn: http.client.HTTPConnection, cut: threading.Event) -> None:
    cut.set()
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # closed meanwhile: nothing to cut
            sock.shutdown(socket.SHUT_RDWR)


def _late(where: str, settings: OAuth2ClientConfig) -> TransientError:
    return TransientError(
        f"{where}: the token endpoint did not answer in whole within "
        f"{deadline_for(settings.timeout):g} s",
        hint="check the endpoint; the group's timeout bounds each read, twice it plus a second "
        "the whole request",
    )


def _token(
    settings: OAuth2ClientConfig, grant: Grant, where: str, body: bytes, started: float
) -> Token:
    answer = _json(body)
    access = answer.get("access_token") if answer else None
    if not isinstance(access, str) or not access or len(access) > MAX_TOKEN_CHARS:
        raise RemoteConfigError(
            f"{where}: the token endpoint answered without a usable access_token",
            hint="check token_url: it must be the OAuth2 token endpoint (…/token)",
        )
    if not access.isascii() or not access.isprintable():
        raise RemoteConfigError(
            f"{where}: the token endpoint sent an access_token syncd cannot use"
        )
    kind = answer.get("token_type") if answer else None
    if isinstance(kind, str) and kind.lower() != "bearer":
        raise RemoteConfigError(
            f"{where}: the token endpoint issued a {_shown(kind, grant)} token, not a Bearer token"
        )
    lifetime = _seconds(answer.get("expires_in") if answer else None)
    margin = min(EXPIRY_MARGIN, lifetime / 4)
    rotated = answer.get("refresh_token") if answer else None
    usable = (
        isinstance(rotated, str)
        and 0 < len(rotated) <= MAX_TOKEN_CHARS
        and rotated.isascii()
        and rotated.isprintable()
    )
    log.info("oauth2.token", group=settings.group, grant=settings.grant, expires_in=lifetime)
    return Token(
        access_token=access,
        expires_at=started + lifetime - margin,
        refresh_token=rotated if usable and isinstance(rotated, str) else None,
        valid_until=started + lifetime - min(VALID_MARGIN, lifetime / 8),
    )


def _seconds(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return DEFAULT_LIFETIME
    return seconds if 0 < seconds < 10 * 365 * 86400 else DEFAULT_LIFETIME


def _json(body: bytes) -> dict[str, Any] | None:
    if len(body) > MAX_RESPONSE_BYTES:
        return None
    try:
        value = json.loads(body.decode("utf-8", "replace"))
    except (ValueError, RecursionError):  # deep nesting fits in 64 KB and exhausts the stack
        return None
    return value if isinstance(value, dict) else None


def _shown(text: str, grant: Grant) -> str:
    """Server text fit for a log line: printable, short, and never one of our secrets."""
    # Redacted whole, then cut: a long secret cut in two would escape the redaction.
    redacted = grant.redact(text[:MAX_RESPONSE_BYTES])
    return "".join(c if c.isprintable() else " " for c in redacted[:200])


def _refusal(
    settings: OAuth2ClientConfig,
    grant: Grant,
    where: str,
    status: int,
    body: bytes,
    headers: Message,
) -> RemoteError:
    """What an error answer means: RFC 6749 section 5.2 error codes first, then the status."""
    answer = _json(body) or {}
    code = answer.get("error") if isinstance(answer.get("error"), str) else None
    said = answer.get("error_description")
    detail = _shown(str(code), grant) + (
        f": {_shown(said, grant)}" if isinstance(said, str) and said else ""
    )
    if status in (408, 429) or status >= 500 or code in _BUSY:
        wait = retry.parse_retry_after(headers.get("Retry-After"))
        if wait is None and status == 429:
            wait = SLOW_DOWN_FOR
        return TransientError(
            f"{where}: the token endpoint answered HTTP {status}"
            + (f" ({detail})" if code in _BUSY else ""),
            retry_after=wait,
        )
    per_user = settings.grant == "refresh_token"
    if code == "invalid_grant" and per_user:
        return CredentialsError(
            f"{where}: the token endpoint refused the refresh token ({detail})",
            hint="the rep's consent was revoked or expired: have them consent again and put "
            "the new refresh token in this member's refresh_token_file",
        )
    if code in _CLIENT_ERRORS or code == "invalid_grant" or (code is None and status in (401, 403)):
        return CredentialsError(
            f"{where}: the token endpoint refused client {settings.client_id!r} "
            f"({detail if code else f'HTTP {status}'})",
            hint="the client secret is wrong, expired or revoked, or client_id is wrong: put a "
            "valid secret where client_secret_file/_env/_command reads it and restart syncd "
            "(it asks again by itself within the hour)",
        )
    if code is not None:  # invalid_scope, unsupported_grant_type, invalid_request...
        return RemoteConfigError(
            f"{where}: the token endpoint rejected the request ({detail})",
            hint="check scope, grant and client_id against the identity provider's app registration",
        )
    return RemoteConfigError(
        f"{where}: the token endpoint answered HTTP {status}",
        hint="check token_url: it must be the OAuth2 token endpoint (…/token)",
    )


def _network_error(where: str, err: BaseException) -> RemoteError:
    reason = err
    if isinstance(reason, ssl.SSLCertVerificationError):
        return RemoteConfigError(
            f"{where}: the token endpoint's TLS certificate is not trusted "
            f"({reason.verify_message})",
            hint="set ca_file to the CA that signed it (trusted besides the system's CAs)",
        )
    if isinstance(reason, ssl.SSLError):
        return RemoteConfigError(f"{where}: TLS to the token endpoint failed ({reason.reason})")
    if isinstance(reason, ConnectionRefusedError):
        return RefusedError(
            f"{where}: the token endpoint refused the connection",
            hint="check token_url and that the server is up",
        )
    if isinstance(reason, (TimeoutError, ConnectionError, http.client.HTTPException, OSError)):
        return TransientError(f"{where}: the token endpoint failed ({type(reason).__name__})")
    return TransientError(f"{where}: the token endpoint failed ({type(err).__name__})")


@dataclass(frozen=True, slots=True)
class _Failure:
    error: RemoteError
    at: float  # time.monotonic()
    digest: bytes  # of the grant that failed
    lasts: float  # seconds

    def answers(self, grant: Grant, now: float) -> bool:
        return grant.digest() == self.digest and now - self.at < self.lasts


@dataclass(slots=True)
class _Flight:
    """The one token request of a cache under way, which the other logins wait for."""

    started: float  # time.monotonic()
    done: threading.Event = field(default_factory=threading.Event)


class TokenCache:
    """One credential's access token: cached, renewed by one request, failures remembered.

    ``get`` returns the cached token while it is fresh; otherwise the first caller requests
    one while the others wait for that request (not on a lock held across it) and then take
    its result, token or error: however many mailboxes log in at once, the endpoint sees
    one request.  While a token is being renewed shortly before its end, the others go on
    using it.  With the refresh-token grant, a refresh token the endpoint rotates is used
    from then on, and kept in the ``RefreshTokenStore`` given to ``get`` so that a restart
    (or another daemon) uses it too.
    """

    def __init__(
        self, settings: OAuth2ClientConfig, where: str, *, reread_after: float = 0.0
    ) -> None:
        self._settings = settings
        self._where = where
        # While a failure stands, the secret is read again (to notice a fix) at most this
        # often: 0 for a file, more for a command (a process and a secret-store request each
        # time, while the group's other logins wait).
        self._reread_after = reread_after
        self._read_at = float("-inf")  # time.monotonic() of the last read
        self._read_digest = b""
        self._lock = threading.Lock()  # held for reads and writes of the fields, never long
        self._flight: _Flight | None = None
        self._token: Token | None = None
        self._failure: _Failure | None = None
        # A refresh token the endpoint rotated, and the digest of the one it replaced: used
        # while the configured file still holds the replaced one.
        self._rotated: tuple[bytes, str] | None = None
        self.requests = 0  # token requests made (each may be retried by REQUEST)

    def get(self, read_grant: Callable[[], Grant], store: RefreshTokenStore | None = None) -> str:
        asked = time.monotonic()
        while True:
            with self._lock:
                now = time.monotonic()
                token, flight = self._token, self._flight
                if token is not None and now < token.expires_at:
                    return token.access_token
                if (
                    token is not None
                    and now < token.valid_until
                    and (flight is not None or self._failing(now))
                ):
                    # Being renewed, or its renewal failed a moment ago: it still works.
                    return token.access_token
                mine = flight is None
                if flight is None:
                    flight = self._flight = _Flight(now)
            if mine:
                try:
                    return self._renew(read_grant, store, asked)
                finally:
                    with self._lock:
                        self._flight = None
                    flight.done.set()
            # Wait for that request until it has taken WAIT_FOR_REQUEST in all: a login that
            # comes later does not wait at all, so a hung endpoint holds one worker.
            left = flight.started + WAIT_FOR_REQUEST - time.monotonic()
            if left <= 0 or not flight.done.wait(left):
                raise TransientError(
                    f"{self._where}: the token endpoint has not answered another mailbox's "
                    f"request for {WAIT_FOR_REQUEST:.0f} s",
                    # Over the connector's inline limit: the scheduler tries this mailbox
                    # again later, rather than LOGIN and PASS waiting on the same request.
                    retry_after=BUSY_RETRY_AFTER,
                )
            with self._lock:
                token, failure = self._token, self._failure
            if token is not None and time.monotonic() < token.valid_until:
                return token.access_token
            if failure is not None and failure.at >= asked:
                raise _again(failure.error, failure)  # the request we waited for failed
            # Otherwise (it answered from a failure remembered earlier): look again.

    def _failing(self, now: float) -> bool:
        failure = self._failure
        return failure is not None and now - failure.at < failure.lasts

    def _renew(
        self, read_grant: Callable[[], Grant], store: RefreshTokenStore | None, asked: float
    ) -> str:
        failure = self._failure
        if failure is not None and failure.at >= asked:
            raise _again(failure.error, failure)  # failed since we asked: not another
        if (
            failure is not None
            and time.monotonic() - self._read_at < self._reread_after
            and failure.digest == self._read_digest
            and time.monotonic() - failure.at < failure.lasts
        ):
            raise _again(failure.error, failure)  # the secret was read a moment ago
        try:
            configured = read_grant()
            grant = self._current(configured, store)
        except RemoteError as err:
            raise self._failed(err, Grant("")) from None
        self._read_at, self._read_digest = time.monotonic(), grant.digest()
        if failure is not None and failure.answers(grant, time.monotonic()):
            raise _again(failure.error, failure)
        self.requests += 1
        try:
            token = request_token(self._settings, grant, where=self._where)
        except RemoteError as err:
            raise self._failed(err, grant) from None
        except Exception as err:  # our bug or a library's: remembered too, never a storm
            internal = InternalError.from_exception(self._where, err)
            raise self._failed(internal, grant) from None
        if token.refresh_token and token.refresh_token != grant.refresh_token:
            self._keep_rotated(configured, token.refresh_token, store)
        with self._lock:
            self._failure = None
            self._token = token
        return token.access_token

    def _failed(self, err: RemoteError, grant: Grant) -> RemoteError:
        with self._lock:
            # The token in hand, if any, stays: while still valid it serves (see get).
            self._failure = _Failure(err, time.monotonic(), grant.digest(), _lasts(err))
        log.warning("oauth2.failed", group=self._settings.group, kind=err.kind, error=str(err))
        return err

    def _current(self, grant: Grant, store: RefreshTokenStore | None) -> Grant:
        """The grant to send: the configured one, unless its refresh token was rotated."""
        configured = grant.refresh_token
        if configured is None:
            return grant
        if store is not None:
            try:
                newest = store.newest(configured)
            except Exception as err:  # the database is down: what memory has will do
                log.warning(
                    "oauth2.rotated_unreadable", group=self._settings.group,
                    error=type(err).__name__,
                )  # fmt: skip
                newest = None
            if newest is not None:
                return Grant(grant.client_secret, newest)
        rotated = self._rotated
        if rotated is not None and Grant("", configured).digest() == rotated[0]:
            return Grant(grant.client_secret, rotated[1])
        return grant

    def _keep_rotated(
        self, configured: Grant, newest: str, store: RefreshTokenStore | None
    ) -> None:
        self._rotated = (Grant("", configured.refresh_token).digest(), newest)
        if store is None or configured.refresh_token is None:
            return
        try:
            store.keep(configured.refresh_token, newest)
        except Exception as err:  # kept in memory; lost at a restart, so said loudly
            log.error(
                "oauth2.rotated_not_saved", group=self._settings.group,
                error=type(err).__name__,
            )  # fmt: skip


def _lasts(err: RemoteError) -> float:
    if isinstance(err, CredentialsError):
        return REFUSED_FOR
    if isinstance(err, RemoteConfigError | InternalError):
        return CONFIG_FOR
    # A Retry-After is the endpoint's wish for the whole client, not for the one mailbox
    # whose scheduler honours it: the group's other mailboxes wait as long.
    if isinstance(err, TransientError) and err.retry_after is not None:
        return max(TRANSIENT_FOR, min(err.retry_after, CONFIG_FOR))
    return TRANSIENT_FOR


def _again(err: RemoteError, failure: _Failure | None = None) -> RemoteError:
    """A copy to raise in another thread: one exception object raised in several threads at
    once would collect their tracebacks.  Its Retry-After is what is left of the wait."""
    again = copy.copy(err).with_traceback(None)
    if failure is not None and isinstance(again, TransientError) and again.retry_after:
        again.retry_after = max(0.0, failure.at + failure.lasts - time.monotonic())
    return again
