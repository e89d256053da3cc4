"""The [directory] source: the CRM's customer list, kept in step without manual re-imports.

A file (checked every ``interval``: its mtime and size first, then a SHA-256 of its content)
or a command printing the same CSV (run every ``interval``, without a shell, within
``timeout`` and ``MAX_FILE_BYTES`` of output).  Content that differs from what was last
applied is mirrored (store/directory_mirror.py): customers and contacts it no longer lists
are archived, returning ones restored.  Content with any bad row changes nothing: the
running directory stays, and the refusal is kept in ``source_states`` (kind "directory")
for `syncd status`, logged, and counted in ``syncd_directory_reload_total{result="error"}``.

The source is applied when its content changes, not at every check: a contact an admin
adds by hand lives until the CRM's next change, which then wins.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine

from syncd.config import Config, DirectoryConfig
from syncd.config_check import as_dict
from syncd.domain.bounds import loggable
from syncd.domain.directory_file import MAX_FILE_BYTES, BadDirectoryFile, RowReader, text_stream
from syncd.errors import SyncdError, UserError
from syncd.logs import get_logger
from syncd.metrics import Metrics
from syncd.store import state
from syncd.store.directory_mirror import (
    Imported,
    applied_state,
    mirror_directory,
    save_applied_state,
)
from syncd.store.status_read import ACCOUNT

log = get_logger("syncd.directory")

KIND = SOURCE = "directory"  # its source_states row: (directory, directory, "")
STDERR_KEPT = 2000  # bytes of a failing command's stderr kept for the message
SETTLE = 2.0  # seconds a file must hold still after its last write before it is applied


class SourceUnreadable(UserError):
    """The file or command could not give its content (missing, too large, exit status)."""


def read_file(path: Path) -> bytes:
    """The file's bytes, refused beyond ``MAX_FILE_BYTES``."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise SourceUnreadable(f"cannot read {path}: {err.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise SourceUnreadable(f"{path} is larger than {MAX_FILE_BYTES // 2**20} MB")
    return data


def _said(stderr: bytes) -> str:
    """What a failing command said, fit for a log line and the status (one line, bounded)."""
    text = " ".join(stderr.decode("utf-8", "replace").split())
    return loggable(text, 300)


def secret_env_names(config: Config) -> frozenset[str]:
    """The environment variables the config reads secrets from (every ``*_env`` key:
    mailbox and calendar passwords, OAuth client secrets, webhook secrets)."""
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and key.endswith("_env") and isinstance(item, str):
                    found.add(item)
                else:
                    walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(as_dict(config))
    return frozenset(found)


def run_command(
    argv: list[str],
    timeout: float,
    should_stop: Callable[[], bool] = lambda: False,
    hidden_env: frozenset[str] = frozenset(),
) -> bytes:
    """``argv``'s standard output: no shell, no input, killed (its whole process group)
    beyond ``timeout`` seconds or ``MAX_FILE_BYTES`` of output, or when ``should_stop``
    (the daemon is stopping: no export is left running behind it).  It runs with syncd's
    environment but for ``hidden_env``: a CRM export script has no business with the
    reps' mailbox passwords the daemon holds there."""
    name = Path(argv[0]).name
    env = {key: value for key, value in os.environ.items() if key not in hidden_env}
    try:
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as err:
        raise SourceUnreadable(
            f"[directory] command {name} could not start: {err.strerror}"
        ) from None
    assert proc.stdout is not None and proc.stderr is not None
    out, said = bytearray(), bytearray()
    deadline = time.monotonic() + timeout
    problem: str | None = None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        selector.register(proc.stderr, selectors.EVENT_READ)
        try:
            while selector.get_map() and problem is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    problem = f"took longer than {timeout:g} s"
                    break
                if should_stop():
                    problem = "was stopped with syncd"
                    break
                for key, _ in selector.select(min(left, 0.5)):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        selector.unregister(key.fileobj)
                    elif key.fileobj is proc.stdout:
                        out += chunk
                        if len(out) > MAX_FILE_BYTES:
                            problem = f"printed more than {MAX_FILE_BYTES:,} bytes"
                    else:
                        said += chunk[: max(0, STDERR_KEPT - len(said))]
            if problem is None:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    problem = f"took longer than {timeout:g} s"
        finally:
            # The group goes whenever the command is cut short, even when its leader has
            # exited: a child it left behind (holding the pipe) would otherwise run on.  The
            # leader is not reaped yet, so its pid (the group's id) cannot have been reused.
            if problem is not None or proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
    if problem is not None:
        raise SourceUnreadable(f"[directory] command {name} {problem}; nothing applied")
    if proc.returncode != 0:
        why = _said(bytes(said))
        raise SourceUnreadable(
            f"[directory] command {name} exited with status {proc.returncode}"
            + (f": {why}" if why else "")
        )
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Outcome:
    result: str  # unchanged | applied | error
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    error: str | None = None


class DirectorySource:
    """Reads the configured source and applies what changed.  One per daemon or command;
    remembers what it last read so that an unchanged file costs one ``stat``."""

    def __init__(
        self,
        engine: Engine,
        config: DirectoryConfig,
        metrics: Metrics | None = None,
        hidden_env: frozenset[str] = frozenset(),
    ) -> None:
        self.engine = engine
        self.config = config
        self.hidden_env = hidden_env  # secrets' variables the command does not inherit
        self._metrics = metrics
        self.should_stop: Callable[[], bool] = lambda: False
        self._stamp: tuple[int, int] | None = None  # (mtime_ns, size) of the file last read
        self._digest: str | None = None  # of the content last handled (applied or refused)

    @property
    def where(self) -> str:
        if self.config.file is not None:
            return self.config.file
        assert self.config.command is not None
        return f"[directory] command {Path(self.config.command[0]).name}"

    def _read(self) -> tuple[bytes, tuple[int, int] | None] | None:
        """The content and the file's (mtime, size), or None when those did not change
        since the content last handled."""
        if self.config.command is not None:
            data = run_command(
                self.config.command, self.config.timeout, self.should_stop, self.hidden_env
            )
            return data, None
        assert self.config.file is not None
        path = Path(self.config.file)
        try:
            before = path.stat()
        except OSError as err:
            raise SourceUnreadable(f"cannot read {path}: {err.strerror}") from None
        stamp = (before.st_mtime_ns, before.st_size)
        if stamp == self._stamp:
            return None
        data = read_file(path)
        # A file the CRM rewrites in place may be read between two of its writes: cut at a
        # row boundary it parses cleanly and would archive every customer after the cut.
        # A file modified within SETTLE seconds is read only once it has held still that long.
        recent = SETTLE - (time.time() - before.st_mtime_ns / 1e9)
        if recent > 0:
            time.sleep(min(recent, SETTLE))
        after = path.stat()
        if (after.st_mtime_ns, after.st_size) != stamp:
            return None  # being written: read it when it holds still
        return data, stamp

    def check(self) -> Outcome:
        """Read the source; apply it when its content changed.  Never raises for a bad
        source (that is an ``error`` outcome); a database failure propagates."""
        try:
            read = self._read()
        except SyncdError as err:
            if self.should_stop():
                return Outcome("unchanged")  # a command cut short by a stop: no refusal
            return self._refused(None, err.message)
        if read is None:
            return Outcome("unchanged")
        data, stamp = read
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._digest:
            self._stamp = stamp
            return Outcome("unchanged")
        outcome = self._handle(data, digest)
        self._stamp = stamp  # handled: until it changes, a stat is all it costs
        return outcome

    def _handle(self, data: bytes, digest: str) -> Outcome:
        """Mirror ``data``: planned outside any write transaction and applied in chunks
        (store/directory_mirror.py), so a large file never makes other writers wait."""

        def applied_before(conn: Connection) -> bool:
            # By us before a restart, or by another daemon: read under the import lock.
            return applied_state(conn).get("fingerprint") == digest

        def finish(conn: Connection, done: Imported) -> None:
            save_applied_state(
                conn,
                {
                    "fingerprint": digest,
                    "counts": done.counts,
                    "rows": done.rows,
                    "applied_at": datetime.now(UTC).isoformat(),
                    "source": self.where,
                },
            )
            state.succeeded(conn, KIND, SOURCE)

        try:
            done = mirror_directory(
                self.engine,
                RowReader(text_stream(data), self.where),
                mirror=True,
                source=self.where,
                allow_empty=self.config.allow_empty,
                batch=self.config.batch,
                skip_if=applied_before,
                finish=finish,
            )
        except BadDirectoryFile as err:
            return self._refused(digest, err.message, problems=err.problems)
        except UserError as err:  # the header, the encoding, the empty-file guard
            return self._refused(digest, err.message)
        self._digest = digest
        if done is None:
            with self.engine.begin() as conn:
                state.succeeded(conn, KIND, SOURCE)
            return Outcome("unchanged")
        if self._metrics is not None:
            self._metrics.directory_reloads.labels("ok").inc()
        log.info("directory.applied", source=self.where, rows=done.rows, **_flat(done.counts))
        return Outcome("applied", done.counts)

    def _refused(self, digest: str | None, message: str, problems: Sequence[str] = ()) -> Outcome:
        """Nothing applied: say so in the status, the log and the metric."""
        first = message.splitlines()[0]
        text = message if len(message) <= 4000 else message[:4000] + " ..."
        with self.engine.begin() as conn:
            state.failed(conn, KIND, SOURCE, ACCOUNT, text, "config")
        self._digest = digest
        if self._metrics is not None:
            self._metrics.directory_reloads.labels("error").inc()
        log.error(
            "directory.refused",
            source=self.where,
            error=loggable(first, 300),
            bad_rows=len(problems),
            first_problems=[loggable(p, 200) for p in list(problems)[:5]],
            kept="the running directory",
        )
        return Outcome("error", error=message)


def _flat(counts: dict[str, dict[str, int]]) -> dict[str, int]:
    return {f"{kind}_{what}": n for kind, by in counts.items() for what, n in by.items()}


class DirectoryWatcher:
    """The daemon's thread for the [directory] source: a check now, then every interval."""

    def __init__(
        self,
        engine: Engine,
        config: DirectoryConfig,
        metrics: Metrics | None,
        on_change: Callable[[], None],
        hidden_env: frozenset[str] = frozenset(),
    ) -> None:
        self.source = DirectorySource(engine, config, metrics, hidden_env)
        self._on_change = on_change
        self._stop = threading.Event()
        self.source.should_stop = self._stop.is_set
        self._thread = threading.Thread(target=self._loop, name="directory", daemon=True)

    @classmethod
    def follow(
        cls,
        current: DirectoryWatcher | None,
        engine: Engine,
        config: Config,
        metrics: Metrics | None,
        on_change: Callable[[], None],
    ) -> DirectoryWatcher | None:
        """The watcher for ``config``: the current one when its [directory] is unchanged,
        else a new one (the old one stopped); None without [directory]."""
        hidden = secret_env_names(config)
        if current is not None and current.source.config == config.directory:
            current.source.hidden_env = hidden
            return current
        if current is not None:
            current.stop()
        if config.directory is None:
            return None
        watcher = cls(engine, config.directory, metrics, on_change, hidden)
        watcher._thread.start()
        return watcher

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.source.check().result == "applied":
                    self._on_change()
            except Exception as err:  # the database may be down: the next round tries again
                log.warning(
                    "directory.check_failed", error=f"{type(err).__name__}: {str(err)[:200]}"
                )
            self._stop.wait(self.source.config.interval)


def apply_once(engine: Engine, config: Config) -> Outcome | None:
    """`syncd sync`: the [directory] source, if any, applied before the pass."""
    if config.directory is None:
        return None
    return DirectorySource(engine, config.directory, hidden_env=secret_env_names(config)).check()


def describe_outcome(outcome: Outcome) -> str:
    if outcome.result == "error":
        return f"directory: FAILED, nothing changed: {outcome.error}"
    if outcome.result == "unchanged":
        return "directory: unchanged"
    return "directory: " + "; ".join(
        f"{kind} " + ", ".join(f"{n} {what}" for what, n in by.items())
        for kind, by in outcome.counts.items()
    )
