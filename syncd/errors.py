"""The one error hierarchy of syncd.

Remote failures are classified by what the caller should do next, not by where
they came from: retry later (transient), stop and alert a person (credentials),
back off (refused), or report and carry on (config, folder).  The CLI turns any
``SyncdError`` into a message and a hint, never a traceback.
"""

from __future__ import annotations


class SyncdError(Exception):
    """Root of every error syncd raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UserError(SyncdError):
    """Wrong input from a person: a bad argument, an unknown customer."""

    exit_code = 2


class ConfigError(UserError):
    """The configuration file is missing or invalid; carries every problem at once."""

    def __init__(self, problems: list[str], *, path: str | None = None) -> None:
        where = f" in {path}" if path else ""
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"{len(problems)} problem(s){where}:\n{lines}",
            hint="fix the keys above; `syncd init` writes a commented example",
        )
        self.problems = problems


class RemoteError(SyncdError):
    """A server (IMAP, CalDAV) failed us.  Subclasses say what to do next."""

    kind = "remote"


class TransientError(RemoteError):
    """Timeouts, resets, server BYE, busy: worth retrying with backoff."""

    kind = "transient"

    def __init__(self, message: str, *, hint: str | None = None, retry_after: float | None = None):
        super().__init__(message, hint=hint)
        self.retry_after = retry_after  # seconds, when the server said (HTTP Retry-After)


class CredentialsError(RemoteError):
    """Login refused: retrying would only lock the account. A person must act."""

    kind = "credentials"


class RefusedError(RemoteError):
    """Connection refused or the server is unreachable: back off and retry later."""

    kind = "refused"


class RemoteConfigError(RemoteError):
    """The server works but our settings do not fit it: TLS, missing folder, no STARTTLS."""

    kind = "config"


class StoreError(SyncdError):
    """The database could not do what was asked."""


def describe(err: SyncdError) -> str:
    """An error as status, logs and the CLI show it: what failed, and how to fix it."""
    return f"{err.message} (fix: {err.hint})" if err.hint else err.message
