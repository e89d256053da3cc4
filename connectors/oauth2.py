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

import copy
import hashlib
import http.client
import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import structlog

from syncd.config import OAuth2ClientConfig
from syncd.connectors import retry
from syncd.connectors.imap import tls_context
from syncd.errors import (
    CredentialsError,
    RefusedError,
    RemoteConfigError,
    RemoteError,
    TransientError,
)

log = structlog.get_logger("syncd.oauth2")

MAX_RESPONSE_BYTES = 64 * 1024  # a token answer is a few KB; a bigger one is not read
MAX_TOKEN_CHARS = 16 * 1024
EXPIRY_MARGIN = 60.0  # seconds before expires_in ends that a token is replaced
DEFAULT_LIFETIME = 300.0  # seconds, when the endpoint does not say (expires_in is optional)
# How long a failure answers for the endpoint, unless the secret read next time differs:
# a refusal as long as the scheduler waits before retrying a refused login (hourly), a
# setting it rejects a quarter of an hour, a passing failure a few seconds (enough that the
# mailboxes waiting for that one request do not each send their own).
REFUSED_FOR = 3600.0
CONFIG_FOR = 900.0
TRANSIENT_FOR = 5.0
# How long a login waits for the token request another mailbox has in flight.  A request
# takes well under a second; one hanging on a dead endpoint (up to its timeout, three
# times) keeps its own worker, and the others give up after this with a transient error
# rather than all the daemon's workers waiting on one group and starving the others.
WAIT_FOR_REQUEST = 10.0
# The Retry-After of a login that found the request in flight too long: over the inline
# retry limit (retry.RetryPolicy.max_retry_after), so the scheduler, not LOGIN, tries again.
BUSY_RETRY_AFTER = 60.0
# How often a client_secret_command is run again while the endpoint's refusal stands.
REREAD_COMMAND = 60.0
_CLIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client"})
# Error codes that say "later", whatever the status (Microsoft's endpoint documents
# temporarily_unavailable: "retry the request after a small delay").
_BUSY = frozenset({"temporarily_unavailable", "server_error"})


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
        for secret in (self.client_secret, self.refresh_token):
            if secret and len(secret) >= 4:
                text = text.replace(secret, "[redacted]")
        return text


@dataclass(frozen=True, slots=True)
class Token:
    access_token: str = ""
    expires_at: float = 0.0  # time.monotonic() after which it is not used, margin taken off
    refresh_token: str | None = None  # a rotated refresh token, when the endpoint sent one

    def __repr__(self) -> str:  # never the token itself, whatever prints it
        return f"Token(expires_at={self.expires_at:.0f})"


def request_token(settings: OAuth2ClientConfig, grant: Grant, *, where: str) -> Token:
    """One token request, retried by the ``REQUEST`` policy when it failed transiently."""
    return retry.REQUEST.call(
        lambda: _post(settings, grant, where),
        on_retry=lambda err, wait: log.info(
            "oauth2.retry", group=settings.group, error=str(err), retry_in=round(wait, 2)
        ),
    )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A token endpoint does not redirect; following one could carry the secret elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _opener(settings: OAuth2ClientConfig) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [
        urllib.request.ProxyHandler({}),  # straight to the endpoint, like the IMAP connection
        _NoRedirect(),
    ]
    if urlsplit(settings.token_url).scheme == "https":
        handlers.append(urllib.request.HTTPSHandler(context=tls_context(settings.ca_file)))
    return urllib.request.build_opener(*handlers)


def _post(settings: OAuth2ClientConfig, grant: Grant, where: str) -> Token:
    form = {
        "grant_type": settings.grant,
        "client_id": settings.client_id,
        "client_secret": grant.client_secret,
    }
    if settings.grant == "refresh_token":
        form["refresh_token"] = grant.refresh_token or ""
    if settings.scope:
        form["scope"] = settings.scope
    request = urllib.request.Request(  # noqa: S310 - the config allows http(s) URLs only
        settings.token_url,
        data=urlencode(form).encode(),
        method="POST",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        },
    )
    started = time.monotonic()
    try:
        with _opener(settings).open(request, timeout=settings.timeout) as response:
            body = response.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as err:
        try:
            answer = err.read(MAX_RESPONSE_BYTES + 1)
        except (OSError, http.client.HTTPException):
            answer = b""
        retry_after = err.headers.get("Retry-After") if err.headers else None
        err.close()
        raise _refusal(settings, grant, where, err.code, answer, retry_after) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as err:
        raise _network_error(where, err) from None
    return _token(settings, grant, where, body, started)


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
    log.info("oauth2.token", group=settings.group, grant=settings.grant, expires_in=lifetime)
    return Token(
        access_token=access,
        expires_at=started + lifetime - margin,
        refresh_token=rotated if isinstance(rotated, str) and rotated else None,
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
    cleaned = "".join(c if c.isprintable() else " " for c in text[:400])
    cleaned = grant.redact(cleaned)
    return cleaned[:200]


def _refusal(
    settings: OAuth2ClientConfig,
    grant: Grant,
    where: str,
    status: int,
    body: bytes,
    retry_after: str | None,
) -> RemoteError:
    """What an error answer means: RFC 6749 section 5.2 error codes first, then the status."""
    answer = _json(body) or {}
    code = answer.get("error") if isinstance(answer.get("error"), str) else None
    said = answer.get("error_description")
    detail = _shown(str(code), grant) + (
        f": {_shown(said, grant)}" if isinstance(said, str) and said else ""
    )
    if status in (408, 429) or status >= 500 or code in _BUSY:
        wait = retry.retry_after_seconds(retry_after)
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
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
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


class TokenCache:
    """One credential's access token: cached, refreshed under a lock, failures remembered.

    ``get`` returns the cached token while it is fresh; otherwise the first caller requests
    one while the others wait on the lock and then take its result, token or error: however
    many mailboxes log in at once, the endpoint sees one request.
    """

    def __init__(
        self, settings: OAuth2ClientConfig, where: str, *, reread_after: float = 0.0
    ) -> None:
        self._settings = settings
        self._where = where
        # While a failure stands, the secret is read again (to notice a fix) at most this
        # often: 0 for a file, more for a command (a process and a secret-store request each
        # time, under the lock the group's other logins wait on).
        self._reread_after = reread_after
        self._read_at = float("-inf")  # time.monotonic() of the last read
        self._read_digest = b""
        self._busy_since: float | None = None  # time.monotonic() the request in flight began
        self._lock = threading.Lock()
        self._token: Token | None = None
        self._failure: _Failure | None = None
        # A refresh token the endpoint rotated, and the digest of the one it replaced: used
        # while the configured file still holds the replaced one.
        self._rotated: tuple[bytes, str] | None = None
        self._configured_refresh: str | None = None
        self.requests = 0  # token requests made (each may be retried by REQUEST)

    def get(self, read_grant: Callable[[], Grant]) -> str:
        asked = time.monotonic()
        # Wait for a request in flight until it has taken WAIT_FOR_REQUEST in all: a login
        # that comes later does not wait at all, so a hung endpoint holds one worker.
        busy = self._busy_since
        wait = WAIT_FOR_REQUEST if busy is None else busy + WAIT_FOR_REQUEST - asked
        if not (self._lock.acquire(timeout=wait) if wait > 0 else self._lock.acquire(False)):
            raise TransientError(
                f"{self._where}: the token endpoint has not answered another mailbox's "
                f"request for {WAIT_FOR_REQUEST:.0f} s",
                # Over the connector's inline limit: the scheduler tries this mailbox again
                # later, rather than LOGIN and PASS waiting on the same request again.
                retry_after=BUSY_RETRY_AFTER,
            )
        try:
            return self._get(read_grant, asked)
        finally:
            self._busy_since = None
            self._lock.release()

    def _get(self, read_grant: Callable[[], Grant], asked: float) -> str:
        token = self._token
        if token is not None and time.monotonic() < token.expires_at:
            return token.access_token
        self._busy_since = time.monotonic()  # reading a secret by command may take a while too
        failure = self._failure
        if failure is not None and failure.at >= asked:
            raise _again(failure.error, failure)  # the request we waited for failed: not another
        if (
            failure is not None
            and time.monotonic() - self._read_at < self._reread_after
            and failure.digest == self._read_digest
            and time.monotonic() - failure.at < failure.lasts
        ):
            raise _again(failure.error, failure)  # the secret was read a moment ago
        grant = self._current(read_grant())
        self._read_at, self._read_digest = time.monotonic(), grant.digest()
        if failure is not None and failure.answers(grant, time.monotonic()):
            raise _again(failure.error, failure)
        self.requests += 1
        try:
            token = request_token(self._settings, grant, where=self._where)
        except RemoteError as err:
            self._failure = _Failure(err, time.monotonic(), grant.digest(), _lasts(err))
            self._token = None
            log.warning("oauth2.failed", group=self._settings.group, kind=err.kind, error=str(err))
            raise
        self._failure = None
        self._token = token
        if token.refresh_token and token.refresh_token != grant.refresh_token:
            self._rotated = (Grant("", self._configured_refresh).digest(), token.refresh_token)
        return token.access_token

    def _current(self, grant: Grant) -> Grant:
        self._configured_refresh = grant.refresh_token
        rotated = self._rotated
        if rotated is not None and Grant("", grant.refresh_token).digest() == rotated[0]:
            return Grant(grant.client_secret, rotated[1])
        return grant


def _lasts(err: RemoteError) -> float:
    if isinstance(err, CredentialsError):
        return REFUSED_FOR
    if isinstance(err, RemoteConfigError):
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
