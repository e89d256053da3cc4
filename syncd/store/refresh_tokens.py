"""Refresh tokens an OAuth2 endpoint rotated, kept in the database, encrypted.

A provider that rotates refresh tokens (each refresh answers with a new one and the old one
dies) and detects reuse answers ``invalid_grant`` to the token a rep's refresh_token_file
still holds once syncd has exchanged it; some revoke the whole consent then.  So the newest
token must outlive the process that received it, and reach the other daemons of a fleet:
it is kept here, under the token it descends from (what the file holds), until the file
holds another one (a new consent starts a new chain).

The file is not rewritten: a systemd credential is read-only, and the daemons of a fleet do
not share one.  The token is encrypted with AES-GCM under a key derived from the
installation secret (``settings``), its row named by an HMAC of the configured token: a
copy of this table alone gives neither token.  A row that cannot be decrypted (the
installation secret changed) is as if absent: the file's token is used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, Engine, select

from syncd.schema.tables import refresh_tokens
from syncd.store.directory import installation_secret
from syncd.store.sql import upsert

NONCE_BYTES = 12  # AES-GCM's standard nonce, random per token sealed


def _keys(secret: bytes) -> tuple[bytes, bytes]:
    """The encryption key and the row-naming key: two purposes, two keys from one secret."""
    seal = hmac.new(secret, b"syncd refresh-token encryption", hashlib.sha256).digest()
    name = hmac.new(secret, b"syncd refresh-token origin", hashlib.sha256).digest()
    return seal, name


def origin_of(secret: bytes, configured: str) -> str:
    return hmac.new(_keys(secret)[1], configured.encode(), hashlib.sha256).hexdigest()


def seal(secret: bytes, origin: str, token: str) -> str:
    """``token`` encrypted and bound to its row (the row's name is the associated data: a
    sealed token copied to another row does not open there)."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(_keys(secret)[0]).encrypt(nonce, token.encode(), origin.encode())
    return base64.b64encode(nonce + sealed).decode()


def unseal(secret: bytes, origin: str, sealed: str) -> str | None:
    """The token, or None when it does not open with this secret and row."""
    try:
        raw = base64.b64decode(sealed, validate=True)
        opened = AESGCM(_keys(secret)[0]).decrypt(
            raw[:NONCE_BYTES], raw[NONCE_BYTES:], origin.encode()
        )
        return opened.decode()
    except (InvalidTag, ValueError):
        return None


def newest(conn: Connection, configured: str) -> str | None:
    """The newest token descended from ``configured``, or None when none was rotated."""
    secret = installation_secret(conn)
    origin = origin_of(secret, configured)
    sealed = conn.scalar(select(refresh_tokens.c.sealed).where(refresh_tokens.c.origin == origin))
    return None if sealed is None else unseal(secret, origin, sealed)


def keep(conn: Connection, configured: str, token: str) -> None:
    """Remember ``token`` as the newest descended from ``configured``."""
    secret = installation_secret(conn)
    origin = origin_of(secret, configured)
    upsert(
        conn,
        refresh_tokens,
        [
            {
                "origin": origin,
                "sealed": seal(secret, origin, token),
                "updated_at": datetime.now(UTC),
            }
        ],
        ["origin"],
        ["sealed", "updated_at"],
    )


class StoredRefreshTokens:
    """The ``RefreshTokenStore`` of connectors/oauth2.py over a database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def newest(self, configured: str) -> str | None:
        with self._engine.begin() as conn:  # begin: the installation secret may be made
            return newest(conn, configured)

    def keep(self, configured: str, newest: str) -> None:
        with self._engine.begin() as conn:
            keep(conn, configured, newest)
