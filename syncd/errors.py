"""The one error hierarchy of syncd.

Remote failures are classified by what the caller should do next, not by where
they came from: retry later (transient), stop and alert a person (credentials),
back off (refused), report and carry on (config, folder), or report and wait for a
fix (internal: our own bug or a library that changed under us).  The CLI turns any
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


class InternalError(RemoteError):
    """A programming error or library drift met while talking to a server (an
    ``AttributeError`` from a changed caldav API): no network or server failure explains
    it, so retrying soon would only repeat it.  The source waits for a person, like a
    refused login, and is tried again hourly in case the cause was passing.

    It is a ``RemoteError`` because it is raised at the connector edge and travels the
    same path to the source's state and to ``syncd status``.  The message names the
    exception type and where it was raised, never the exception's own text: that may
    quote what a server sent, or a secret.
    """

    kind = "internal"

    @classmethod
    def from_exception(cls, where: str, err: BaseException) -> InternalError:
        return cls(
            f"{where}: internal error ({type(err).__name__} at {raised_at(err)})",
            hint="a bug or an incompatible library version; please report it with the log line",
        )


def raised_at(err: BaseException) -> str:
    """``module.py:line in function`` of the innermost frame of ``err``'s traceback: where
    to look, without any value from the program's data."""
    tb = err.__traceback__
    if tb is None:
        return "an unknown place"
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    return f"{code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno} in {code.co_name}"


class StoreError(SyncdError):
    """The database could not do what was asked."""


class VerifyStopped(Exception):
    """A verify asked to stop (the daemon is stopping) ended at its next folder, calendar
    or batch.  Not a SyncdError: nothing failed, and nothing catches it as a remote error."""


def describe(err: SyncdError) -> str:
    """An error as status, logs and the CLI show it: what failed, and how to fix it."""
    return f"{err.message} (fix: {err.hint})" if err.hint else err.message
