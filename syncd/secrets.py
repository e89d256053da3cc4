"""Reading secrets from where admins keep them, without ever echoing them.

Sources, as admins know them from getmail, vdirsyncer and mbsync: a file (systemd
``LoadCredential=`` puts one under ``$CREDENTIALS_DIRECTORY``), an environment
variable, a command (a password manager), or the config itself.  Errors name the
source, never the content.
"""

from __future__ import annotations

from pathlib import Path

from syncd.config import Config, GroupMemberConfig, SecretSourceConfig
from syncd.group_tokens import TokenCaches
from syncd.secret_sources import credential_path, read_from


def read_secret(
    source: SecretSourceConfig,
    *,
    what: str,
    key: str = "password",
    tokens: TokenCaches | None = None,
) -> str:
    """The secret of ``source``; CredentialsError naming the source (not the value) if unreadable.
    ``key`` is how the config names it in messages: "password" (password_file...) or "secret".

    A mailbox of a [[mailbox_group]] that logs in with XOAUTH2 gets its access token from
    the group's token endpoint (syncd/group_tokens.py), through ``tokens``, the caches the
    caller's process keeps (without them, a token for this login alone)."""
    if isinstance(source, GroupMemberConfig) and source.oauth2 is not None:
        return (tokens if tokens is not None else TokenCaches()).member_token(source)
    if source.password is not None:
        return source.password.get_secret_value()
    return read_from(
        what=what,
        file=source.password_file,
        env=source.password_env,
        command=source.password_command,
        key=key,
    )


def _others_may_read(path: Path) -> int | None:
    """The permission bits of ``path`` when its group or others may read it, else None."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return None  # missing or unreadable: reading it reports that, with a hint
    return mode if mode & 0o044 else None


def exposed_secrets(config: Config, config_path: Path) -> list[str]:
    """Secrets that users other than syncd's may read: an inline ``password`` in a config
    file others can read, or a ``password_file``, ``client_secret_file`` or a member's
    ``refresh_token_file`` others can read.  Names files, never values."""
    problems: list[str] = []
    sources: list[tuple[str, SecretSourceConfig]] = [
        *((f"mailbox {b.name}", b) for b in config.mailbox if not isinstance(b, GroupMemberConfig)),
        *((f"calendar {c.name}", c) for c in config.calendar),
        *((f"webhook {w.name}", w.secret_source()) for w in config.webhook),
    ]
    inline = [what for what, source in sources if source.password is not None]
    inline += [f"mailbox_group {g.name}" for g in config.mailbox_group if g.password is not None]
    files = [(what, "password_file", source.password_file) for what, source in sources]
    for group in config.mailbox_group:
        files += [
            (f"mailbox_group {group.name}", "password_file", group.password_file),
            (f"mailbox_group {group.name}", "client_secret_file", group.client_secret_file),
        ]
    mode = _others_may_read(config_path) if inline else None
    if mode is not None:
        problems.append(
            f"{config_path} holds an inline password ({', '.join(inline)}) and is readable by "
            f"group or others (mode {mode:04o}): chmod 600 it, or move the password to a "
            "password_file (a systemd credential)"
        )
    for what, key, file in files:
        if file is None:
            continue
        path = credential_path(file)
        mode = _others_may_read(path)
        if mode is not None:
            problems.append(
                f"{what}: {key} {path} is readable by group or others "
                f"(mode {mode:04o}): chmod 600 it"
            )
    problems += _exposed_refresh_tokens(config)
    return problems


MAX_NAMED_FILES = 10  # per group: a fleet's worth of warnings would drown the log


def _exposed_refresh_tokens(config: Config) -> list[str]:
    """The members' refresh_token_file others may read, a few named and the rest counted."""
    exposed: dict[str, list[str]] = {}
    for box in config.mailbox:
        if not isinstance(box, GroupMemberConfig) or box.refresh_token_file is None:
            continue
        path = credential_path(box.refresh_token_file)
        mode = _others_may_read(path)
        if mode is not None:
            exposed.setdefault(box.group, []).append(
                f"mailbox {box.name}: refresh_token_file {path} is readable by group or others "
                f"(mode {mode:04o}): chmod 600 it"
            )
    problems: list[str] = []
    for group, lines in exposed.items():
        problems += lines[:MAX_NAMED_FILES]
        if len(lines) > MAX_NAMED_FILES:
            problems.append(
                f"mailbox_group {group}: {len(lines) - MAX_NAMED_FILES} more refresh_token_file "
                "files are readable by group or others"
            )
    return problems
