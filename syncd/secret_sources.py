"""Reading a secret from where admins keep it, without ever echoing it.

Sources, as admins know them from getmail, vdirsyncer and mbsync: a file (systemd
``LoadCredential=`` puts one under ``$CREDENTIALS_DIRECTORY``), an environment variable or
a command (a password manager).  Errors name the source, never the content.  Which source a
mailbox, calendar or webhook uses is syncd/secrets.py's business.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from syncd.errors import CredentialsError

COMMAND_TIMEOUT = 30.0
# A password or token is a few KB at most; a bigger file (a wrong path in a members file,
# a device) is refused before it fills memory or is sent anywhere.
MAX_SECRET_BYTES = 64 * 1024


def credential_path(name: str) -> Path:
    path = Path(name)
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if not path.is_absolute() and creds:
        return Path(creds) / path
    return path


def confined(path: Path, within: str) -> Path | None:
    """``path`` with every link resolved, if that lies in the folder ``within``; else None."""
    real = path.resolve()
    return real if real.is_relative_to(Path(within).resolve()) else None


def read_from(
    *,
    what: str,
    file: str | None,
    env: str | None,
    command: str | None,
    key: str,
    within: str | None = None,
) -> str:
    """A secret from the one of ``{key}_file``, ``{key}_env``, ``{key}_command`` that is set.
    With ``within``, the file must lie in that folder, links resolved (a members file names
    refresh_token_file: it may not send /etc/shadow to a token endpoint)."""
    if file is not None:
        path = credential_path(file)
        if within is not None:
            real = confined(path, within)
            if real is None:
                raise CredentialsError(
                    f"{what}: {key}_file {path} is outside {within}",
                    hint=f"a members file may name only files in {within}",
                )
            path = real
        try:
            with path.open("rb") as opened:
                raw = opened.read(MAX_SECRET_BYTES + 1)
        except OSError as err:
            raise CredentialsError(
                f"{what}: cannot read {key}_file {path} ({err.strerror})",
                hint="check the path and that the syncd user may read it",
            ) from None
        if len(raw) > MAX_SECRET_BYTES:
            raise CredentialsError(
                f"{what}: {key}_file {path} is over {MAX_SECRET_BYTES:,} bytes, not a secret",
                hint=f"check the path: it must name the file that holds only the {key}",
            )
        try:
            return raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise CredentialsError(
                f"{what}: {key}_file {path} is not UTF-8 text",
                hint=f"check the path: it must name the file that holds only the {key}",
            ) from None
    if env is not None:
        from_env = os.environ.get(env)
        if from_env is None:
            raise CredentialsError(
                f"{what}: environment variable {env} is not set",
                hint=f"export {env} before starting syncd",
            )
        return from_env
    assert command is not None  # the config guarantees one source
    try:
        done = subprocess.run(
            shlex.split(command),
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired, ValueError) as err:
        raise CredentialsError(
            f"{what}: {key}_command could not run ({type(err).__name__})",
            hint="run the command by hand as the syncd user to see why",
        ) from None
    if done.returncode != 0:
        raise CredentialsError(
            f"{what}: {key}_command exited with status {done.returncode}",
            hint="run the command by hand as the syncd user to see why",
        )
    lines = done.stdout.decode("utf-8", "replace").splitlines()
    return lines[0] if lines else ""
