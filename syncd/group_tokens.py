"""The XOAUTH2 access token of a [[mailbox_group]] member, from its group's shared cache.

With the client-credentials grant one token serves every mailbox of the group: the cache
is keyed by the group's token settings, so its sync workers, IDLE watchers and a reload
that leaves the settings alone all share it.  With the refresh-token grant each member has
its own refresh token, hence its own cache.  The caches live for the process: a handful of
objects per group, holding nothing but a token and the time it expires.

A refresh token the endpoint rotates is kept in the process's database (one per process,
named by ``keep_rotated_tokens_in`` when it is opened), so that a restart uses it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from syncd.config import Config, GroupMemberConfig, OAuth2ClientConfig
from syncd.connectors.oauth2 import REREAD_COMMAND, Grant, RefreshTokenStore, TokenCache
from syncd.secret_sources import read_from

if TYPE_CHECKING:
    from sqlalchemy import Engine

_caches: dict[tuple[OAuth2ClientConfig, str | None], TokenCache] = {}
_caches_lock = threading.Lock()
_rotated: list[RefreshTokenStore] = []  # the one store of the process, once named


def uses_refresh_tokens(config: Config) -> bool:
    return any(
        isinstance(box, GroupMemberConfig) and box.refresh_token_file is not None
        for box in config.mailbox
    )


def keep_rotated_tokens_in(engine: Engine) -> None:
    """Rotated refresh tokens are kept in (and read from) this database from now on."""
    from syncd.store.refresh_tokens import StoredRefreshTokens

    with _caches_lock:
        _rotated[:] = [StoredRefreshTokens(engine)]


def cache_for(member: GroupMemberConfig) -> TokenCache:
    """The token cache ``member`` shares with the other mailboxes of its credential."""
    settings = member.oauth2
    assert settings is not None, "a member that logs in with a password has no token"
    per_member = member.refresh_token_file if settings.grant == "refresh_token" else None
    key = (settings, per_member)
    with _caches_lock:
        cache = _caches.get(key)
        if cache is None:
            where = f"mailbox group {settings.group}"
            if per_member is not None:
                where += f" (mailbox {member.name})"
            reread = REREAD_COMMAND if settings.client_secret_command is not None else 0.0
            cache = _caches[key] = TokenCache(settings, where, reread_after=reread)
        return cache


def member_token(member: GroupMemberConfig) -> str:
    """A fresh access token for ``member``'s XOAUTH2 login; a RemoteError says why not."""
    settings = member.oauth2
    assert settings is not None
    what = f"mailbox group {settings.group}"

    def grant() -> Grant:
        secret = read_from(
            what=what,
            file=settings.client_secret_file,
            env=settings.client_secret_env,
            command=settings.client_secret_command,
            key="client_secret",
        )
        refresh = None
        if settings.grant == "refresh_token":
            refresh = read_from(
                what=f"{what} mailbox {member.name}",
                file=member.refresh_token_file,
                env=None,
                command=None,
                key="refresh_token",
                within=member.refresh_token_dir,
            )
        return Grant(secret, refresh)

    store = _rotated[0] if _rotated and settings.grant == "refresh_token" else None
    return cache_for(member).get(grant, store)
