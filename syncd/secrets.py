"""Reading secrets from where admins keep them, without ever echoing them.

Sources, as admins know them from getmail, vdirsyncer and mbsync: a file (systemd
``LoadCredential=`` puts one under ``$CREDENTIALS_DIRECTORY``), an environment
variable, a command (a password manager), or the config itself.  Errors name the
source, never the content.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from syncd.config import Config, SecretSourceConfig
from syncd.errors import CredentialsError

COMMAND_TIMEOUT = 30.0


def _credential_path(name: str) -> Path:
    path = Path(name)
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if not path.is_absolute() and creds:
        return Path(creds) / path
    return path


def read_secret(source: SecretSourceConfig, *, what: str) -> str:
    """The secret of ``source``; CredentialsError naming the source (not the value) if unreadable."""
    if source.password is not None:
        return source.password.get_secret_value()
    if source.password_file is not None:
        path = _credential_path(source.password_file)
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as err:
            raise CredentialsError(
                f"{what}: cannot read password_file {path} ({err.strerror})",
                hint="check the path and that the syncd user may read it",
            ) from None
        return value
    if source.password_env is not None:
        from_env = os.environ.get(source.password_env)
        if from_env is None:
            raise CredentialsError(
                f"{what}: environment variable {source.password_env} is not set",
                hint=f"export {source.password_env} before starting syncd",
            )
        return from_env
    assert source.password_command is not None  # the config guarantees one source
    try:
        done = subprocess.run(
            shlex.split(source.password_command),
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired, ValueError) as err:
        raise CredentialsError(
            f"{what}: password_command could not run ({type(err).__name__})",
            hint="run the command by hand as the syncd user to see why",
        ) from None
    if done.returncode != 0:
        raise CredentialsError(
            f"{what}: password_command exited with status {done.returncode}",
            hint="run the command by hand as the syncd user to see why",
        )
    lines = done.stdout.decode("utf-8", "replace").splitlines()
    return lines[0] if lines else ""


def _others_may_read(path: Path) -> int | None:
    """The permission bits of ``path`` when its group or others may read it, else None."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return None  # missing or unreadable: reading it reports that, with a hint
    return mode if mode & 0o044 else None


def exposed_secrets(config: Config, config_path: Path) -> list[str]:
    """Secrets that users other than syncd's may read: an inline ``password`` in a config
    file others can read, or a ``password_file`` others can read.  Names files, never values."""
    problems: list[str] = []
    sources: list[tuple[str, SecretSourceConfig]] = [
        *((f"mailbox {b.name}", b) for b in config.mailbox),
        *((f"calendar {c.name}", c) for c in config.calendar),
    ]
    inline = [what for what, source in sources if source.password is not None]
    mode = _others_may_read(config_path) if inline else None
    if mode is not None:
        problems.append(
            f"{config_path} holds an inline password ({', '.join(inline)}) and is readable by "
            f"group or others (mode {mode:04o}): chmod 600 it, or move the password to a "
            "password_file (a systemd credential)"
        )
    for what, source in sources:
        if source.password_file is None:
            continue
        path = _credential_path(source.password_file)
        mode = _others_may_read(path)
        if mode is not None:
            problems.append(
                f"{what}: password_file {path} is readable by group or others "
                f"(mode {mode:04o}): chmod 600 it"
            )
    return problems
