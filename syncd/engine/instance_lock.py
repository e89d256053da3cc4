"""One daemon per SQLite database.

SQLite serializes writers; two daemons on one file would only fight over it and sync
every mailbox twice.  PostgreSQL takes several daemons, which share sources by lease.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy.engine import make_url

from syncd.errors import UserError


class InstanceLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @classmethod
    def for_database(cls, url: str) -> InstanceLock | None:
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
            return None
        # The resolved path: a daemon started through a symlink (to the file or to a folder
        # above it) or a relative path names the same file, so it must find the same lock.
        return cls(Path(f"{Path(parsed.database).resolve()}.lock"))

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UserError(
                f"another `syncd run` (pid {holder}) is already using this database",
                hint=f"stop it first (lock file {self.path}); one daemon per SQLite database, "
                "use PostgreSQL to run several",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock; the file stays for the next start
            self._fd = None
