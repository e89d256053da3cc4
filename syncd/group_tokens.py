"""The XOAUTH2 access token of a [[mailbox_group]] member, from its group's shared cache.

With the client-credentials grant one token serves every mailbox of the group: the cache
is keyed by the group's token settings, so its sync workers, IDLE watchers and a reload
that leaves the settings alone all share it.  With the refresh-token grant each member has
its own refresh token, hence its own cache.  The caches live in a ``TokenCaches`` that the
daemon (or a CLI command) owns and hands to what logs in: a handful of objects per group,
holding nothing but a token and the time it expires.

A refresh token the endpoint rotates is kept in the owner's database (named by
``TokenCaches.keep_rotated_in`` when it is opened), so that a restart uses it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from syncd.config import Config, GroupMemberConfig, OAuth2ClientConfig
from syncd.secret_sources import read_from

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from syncd.connectors.oauth2 import Grant, RefreshTokenStore, TokenCache


def uses_refresh_tokens(config: Config) -> bool:
    return any(
        isinstance(box, GroupMemberConfig) and box.refresh_token_file is not None
        for box in config.mailbox
    )


class TokenCaches:
    """The token caches of one process's mailbox groups, and where rotated refresh tokens
    are kept.  The daemon and each CLI command make one and hand it to whatever logs in
    (the IMAP opener, the IDLE hub); nothing else in the process holds tokens."""

    def __init__(self) -> None:
        self._caches: dict[tuple[OAuth2ClientConfig, str | None], TokenCache] = {}
        self._lock = threading.Lock()
        self._rotated: RefreshTokenStore | None = None  # the process's database, once named

    def keep_rotated_in(self, engine: Engine) -> None:
        """Rotated refresh tokens are kept in (and read from) this database from now on."""
        from syncd.store.refresh_tokens import StoredRefreshTokens

        with self._lock:
            self._rotated = StoredRefreshTokens(engine)

    def cache_for(self, member: GroupMemberConfig) -> TokenCache:
        """The token cache ``member`` shares with the other mailboxes of its credential."""
        settings = member.oauth2
        assert settings is not None, "a member that logs in with a password has no token"
        per_member = member.refresh_token_file if settings.grant == "refresh_token" else None
        key = (settings, per_member)
        with self._lock:
            cache = self._caches.get(key)
            if cache is None:
                # The token endpoint's client, only for a group that logs in with XOAUTH2:
                # every command makes a TokenCaches, most never ask it for a token.
                from syncd.connectors.oauth2 import REREAD_COMMAND, TokenCache

                where = f"mailbox group {settings.group}"
                if per_member is not None:
                    where += f" (mailbox {member.name})"
                reread = REREAD_COMMAND if settings.client_secret_command is not None else 0.0
                cache = self._caches[key] = TokenCache(settings, where, reread_after=reread)
            return cache

    def member_token(self, member: GroupMemberConfig) -> str:
        """A fresh access token for ``member``'s XOAUTH2 login; a RemoteError says why not."""
        store = self._rotated if member.oauth2 and member.oauth2.grant == "refresh_token" else None
        return self.cache_for(member).get(lambda: _grant(member), store)


def _grant(member: GroupMemberConfig) -> Grant:
    """What ``member``'s token request sends: the client secret (and its refresh token)."""
    settings = member.oauth2
    assert settings is not None
    what = f"mailbox group {settings.group}"
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
    from syncd.connectors.oauth2 import Grant

    return Grant(secret, refresh)
