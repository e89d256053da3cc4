"""Who is calling: the bearer token, its scope and rep, and its share of the rate limit.

Tokens are looked up by hash at most once a second per token: a revoked token is refused
within a second, and a busy client costs the database one query a second, not one a request.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from syncd.api.problems import Problem
from syncd.store import api_tokens
from syncd.store.api_tokens import Token

CACHE_SECONDS = 1.0
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="syncd"'}


@dataclass
class _Bucket:
    """A token bucket: ``rate`` requests a second, bursts up to ``rate`` (at least 1)."""

    tokens: float
    at: float


class Authenticator:
    def __init__(self, engine: Engine, *, rate_limit: int, processes: int = 1) -> None:
        """``rate_limit`` requests a second per token in all; when ``processes`` serve the
        API (syncd/api/processes.py), each allows its share, ``rate_limit / processes``
        (bursts up to it, at least one request)."""
        self._engine = engine
        self._limit = rate_limit
        self._processes = max(1, processes)
        self._rate = rate_limit / self._processes
        self._burst = max(1.0, self._rate)
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Token | None]] = {}  # secret hash -> (until, token)
        self._buckets: dict[int, _Bucket] = {}
        self._touched: dict[int, float] = {}  # token id -> when last_used_at was written

    async def token_async(self, authorization: str | None) -> Token:
        """``token``, from the event loop: the database is read in the thread pool, only
        when the cache has no fresh answer, and ``last_used_at`` written the same way."""
        secret = _secret(authorization)
        key = api_tokens.digest(secret)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] > now and not self._touch_due(cached[1], now):
            return self._admit(cached[1], now)
        return await run_in_threadpool(self.token, authorization)

    def _touch_due(self, token: Token | None, now: float) -> bool:
        if token is None:
            return False
        with self._lock:
            last = self._touched.get(token.id)
        return last is None or now - last >= api_tokens.TOUCH_EVERY.total_seconds()

    def _admit(self, found: Token | None, now: float) -> Token:
        if found is None or (
            found.expires_at is not None and found.expires_at <= datetime.now(UTC)
        ):
            raise Problem(401, "the token is unknown, revoked or expired", headers=_CHALLENGE)
        self._throttle(found, now)
        return found

    def token(self, authorization: str | None) -> Token:
        """The live token of this ``Authorization`` header; 401 otherwise."""
        secret = _secret(authorization)
        key = api_tokens.digest(secret)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            found = cached[1]
        else:
            with self._engine.connect() as conn:
                found = api_tokens.check(conn, secret)
            with self._lock:
                if len(self._cache) > 10_000:  # guessed tokens must not grow it without end
                    self._cache.clear()
                self._cache[key] = (now + CACHE_SECONDS, found)
        token = self._admit(found, now)
        self._touch(token, now)
        return token

    def _too_many(self) -> str:
        if self._processes == 1:
            return f"more than {self._limit} requests a second with this token"
        return (
            f"more than {self._rate:g} requests a second with this token on this process: "
            f"its share of rate_limit {self._limit}, divided among {self._processes} API "
            "processes ([api] workers)"
        )

    def _throttle(self, token: Token, now: float) -> None:
        with self._lock:
            bucket = self._buckets.get(token.id)
            if bucket is None:
                bucket = self._buckets[token.id] = _Bucket(self._burst, now)
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.at) * self._rate)
            bucket.at = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return
            wait = (1.0 - bucket.tokens) / self._rate
        raise Problem(
            429,
            self._too_many(),
            headers={"Retry-After": str(max(1, round(wait + 0.5)))},
        )

    def _touch(self, token: Token, now: float) -> None:
        """``last_used_at``, written at most once a minute per token."""
        with self._lock:
            last = self._touched.get(token.id)
            if last is not None and now - last < api_tokens.TOUCH_EVERY.total_seconds():
                return
            self._touched[token.id] = now
        with self._engine.begin() as conn:
            api_tokens.touch(conn, token.id, datetime.now(UTC))


def _secret(authorization: str | None) -> str:
    if not authorization:
        raise Problem(401, "no bearer token: send Authorization: Bearer TOKEN", headers=_CHALLENGE)
    scheme, _, secret = authorization.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret or len(secret) > 200:
        raise Problem(401, "Authorization is not a bearer token", headers=_CHALLENGE)
    return secret


def require(token: Token, scope: str) -> None:
    if not token.allows(scope):
        raise Problem(403, f"token {token.name!r} has scope {token.scope!r}; this needs {scope!r}")


def actor(token: Token) -> str:
    """How the audit names a write made with this token."""
    return f"api:{token.name}"
