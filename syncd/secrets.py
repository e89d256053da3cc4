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

from syncd.config import SecretSourceConfig
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
