"""A sync pass over mailboxes: read new messages, capture them, checkpoint per batch.

Each batch of UIDs commits together with the folder cursor.  A crash or kill loses
at most the batch in flight, which the next pass fetches again; replaying it inserts
nothing twice.  A failing mailbox or folder is recorded and the others carry on.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine

from syncd.config import Config, MailboxConfig
from syncd.connectors import retry
from syncd.connectors.base import FetchedMessage, MailSession
from syncd.domain.accounting import skip_rule
from syncd.domain.bounds import bound_id
from syncd.domain.headers import parse_message_ids, read_header_section
from syncd.domain.matching import Directory
from syncd.engine.backlog import Backlog
from syncd.engine.imap.prefetch import Prefetched
from syncd.engine.imap.unchanged import SessionOpener, unchanged
from syncd.engine.imap.unchanged import open_imap as open_imap  # where callers long found it
from syncd.errors import RemoteConfigError, RemoteError, describe
from syncd.logs import get_logger
from syncd.store import state
from syncd.store.capture import (
    FolderBatch,
    advance_cursor,
    email_key,
    record_ids,
    refused_values,
    save_batch,
)
from syncd.store.directory import load_directory
from syncd.store.sql import chunks

if TYPE_CHECKING:
    from syncd.engine.imap.parse_worker import ParseWorker
    from syncd.engine.imap.pipeline import Outcome, Policy

log = get_logger("syncd.sync")
# UIDs searched at a time; a window of the UID space, not of messages (UIDs have gaps).
UID_WINDOW = 10_000

Progress = Callable[[str, int, int], None]  # (mailbox/folder, done, total)


@dataclass(slots=True)
class FolderResult:
    folder: str
    captured: int = 0
    skipped: int = 0
    quarantined: int = 0
    error: str | None = None
    unchanged: bool = False  # its success is written with the mailbox's, in one transaction
    # The folder's cursor once this pass is over (None: interrupted or failed): what the
    # daemon's next poll compares the server's STATUS with (``unchanged_folders``).
    cursor: state.Cursor | None = None


@dataclass(slots=True)
class MailboxResult:
    mailbox: str
    folders: list[FolderResult] = field(default_factory=list)
    error: RemoteError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(f.error is None for f in self.folders)


class MailSync:
    """Runs passes over the configured mailboxes against one database."""

    def __init__(
        self,
        engine: Engine,
        config: Config,
        *,
        opener: SessionOpener = open_imap,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        fence: Callable[[Connection], None] = lambda _conn: None,
        backlog: Backlog | None = None,
        parse_worker: bool = False,
    ) -> None:
        self._engine = engine
        # A backlog is parsed in a forked child (parse_worker.py): only for a caller whose
        # thread is the process's only one when the pass starts (`syncd sync`).
        self._parse_worker = parse_worker
        # The daemon's, read by its webhook deliverer; a one-shot run's is its own.
        self._backlog = backlog if backlog is not None else Backlog()
        # Called inside each batch's transaction: the daemon renews its lease there and
        # raises (rolling the batch back) when another daemon took the source over.
        self._fence = fence
        self._config = config
        self._opener = opener
        self._progress = progress
        # Asked between batches: a daemon told to stop commits the batch in hand and leaves;
        # the cursor already says where the next run picks up.
        self._should_stop = should_stop

    def run_once(self, names: list[str] | None = None) -> list[MailboxResult]:
        with self._engine.connect() as conn:
            directory = load_directory(conn, self._config.capture)
        boxes = [b for b in self._config.mailbox if names is None or b.name in names]
        return [self.sync_mailbox(box, directory) for box in boxes]

    def sync_mailbox(self, box: MailboxConfig, directory: Directory) -> MailboxResult:
        # Every write of a pass is fenced, its failures too: a holder that was paused while
        # its lease moved must not overwrite what the new holder records.
        with self._engine.begin() as conn:
            self._fence(conn)
            state.mailbox_attempt(conn, box.name)
        result = MailboxResult(box.name)
        # A connection lost mid-pass re-opens the session by the PASS retry policy and
        # resumes from the committed cursor: it turns a server restart during a backfill
        # into a pause rather than a failure.
        try:
            retry.PASS.call(
                lambda: self._sync_folders(box, directory, result),
                should_stop=self._should_stop,
                on_retry=lambda err, wait: log.warning(
                    "mailbox.retry", mailbox=box.name, error=str(err), retry_in=round(wait, 2)
                ),
            )
            result.error = None
        except RemoteError as err:
            result.error = err
        with self._engine.begin() as conn:
            self._fence(conn)
            failed = result.error
            state.mailbox_done(
                conn,
                box.name,
                error=describe(failed) if failed else None,
                kind=failed.kind if failed else None,
                folders_ok=[f.folder for f in result.folders if f.unchanged],
            )
        if result.error:
            log.error(
                "mailbox.failed", mailbox=box.name, kind=result.error.kind, error=str(result.error)
            )
        return result

    def _sync_folders(
        self, box: MailboxConfig, directory: Directory, result: MailboxResult
    ) -> None:
        session = self._opener(box, self._config.capture.max_message_bytes)
        try:
            folders = box.folders or session.default_folders()
            done = {f.folder for f in result.folders if f.error is None}
            for folder in folders:
                if folder in done:
                    continue
                if self._should_stop():
                    return
                outcome = FolderResult(folder)
                try:
                    self._sync_folder(session, box, folder, directory, outcome)
                except RemoteConfigError as err:
                    # A bad folder is reported; the other folders of the mailbox still sync.
                    outcome.error = describe(err)
                    with self._engine.begin() as conn:
                        self._fence(conn)
                        state.folder_failed(conn, box.name, folder, outcome.error, err.kind)
                    log.error("folder.failed", mailbox=box.name, folder=folder, error=str(err))
                result.folders = [f for f in result.folders if f.folder != folder] + [outcome]
        finally:
            session.close()

    def _sync_folder(
        self,
        session: MailSession,
        box: MailboxConfig,
        folder: str,
        directory: Directory,
        outcome: FolderResult,
    ) -> None:
        with self._engine.connect() as conn:
            cursor = state.get_cursor(conn, box.name, folder)
        # A known folder is asked first with STATUS, which opens nothing: unchanged, that
        # one round trip is the whole poll.  Otherwise (or first seen) it is examined.
        status = None
        if cursor is not None:
            try:
                status = session.status(folder)
            except RemoteConfigError:
                status = None  # a server that refuses STATUS here: EXAMINE decides
        if status is None or not (status.selected or unchanged(cursor, status)):
            status = session.examine(folder)
        reidentify = False
        first_uid = 1
        if cursor is not None and cursor.uidvalidity == status.uidvalidity:
            if unchanged(cursor, status):
                # Nothing new: one STATUS, no FETCH, and no transaction of its own (a
                # thousand mailboxes taken over at once are a thousand such polls).
                outcome.unchanged = True
                outcome.cursor = cursor
                return
            first_uid = cursor.last_uid + 1
        elif cursor is not None and cursor.uidvalidity is not None:
            reidentify = True
            log.warning(
                "folder.uidvalidity_changed",
                mailbox=box.name,
                folder=folder,
                old=cursor.uidvalidity,
                new=status.uidvalidity,
            )
            with self._engine.begin() as conn:
                self._fence(conn)  # it deletes sources: only the lease holder may
                state.reset_folder(conn, box.name, folder, status.uidvalidity)

        where = f"{box.name}/{folder}"
        expected = (
            status.exists
            if status.uidnext is None
            else min(status.exists, status.uidnext - first_uid)
        )
        done = 0
        last_seen = 0
        # More than a batch to read is a backlog: deliveries trickle meanwhile (backlog.py).
        backlog: AbstractContextManager[None] = (
            self._backlog.capturing()
            if expected > self._config.capture.batch_size
            else nullcontext()
        )
        batches = self._batches(session, first_uid, status.uidnext)
        # A backlog's FETCHes run a batch ahead on a thread of their own (prefetch.py): the
        # socket waits while this thread parses and saves.  After a UIDVALIDITY change a
        # batch is re-identified (database and server) before it is fetched: in turn.
        # A backlog is parsed a batch ahead in a child of its own when the caller allows
        # it (parse_worker.py), forked before the read-ahead thread starts.
        stream: Iterable[tuple[list[int], list[FetchedMessage] | None]]
        ahead: AbstractContextManager[object] = nullcontext()
        worker: ParseWorker | None = None
        if reidentify or expected <= self._config.capture.batch_size:
            stream = ((uids, None) for uids in batches)
        else:
            # Only where fork is the ordinary way to start a process (not macOS, Windows).
            if self._parse_worker and sys.platform == "linux":
                from syncd.engine.imap.parse_worker import ParseWorker

                worker = ParseWorker(self._policy(box), directory)
            stream = ahead = Prefetched(
                ((uids, session.fetch(uids)) for uids in batches), name="imap-fetch"
            )
        read = (
            self._read_in_turn(
                session, box, folder, status.uidvalidity, directory, reidentify, stream
            )
            if worker is None
            else self._parsed_ahead(worker, stream, box, folder, status.uidvalidity)
        )
        with backlog, ahead, worker or nullcontext():
            for uid_batch, batch in read:
                self._save(batch, outcome)
                done += len(uid_batch)
                last_seen = uid_batch[-1]
                if self._progress:
                    self._progress(where, done, max(done, expected))
                if self._should_stop():
                    log.info("folder.interrupted", mailbox=box.name, folder=folder, done=done)
                    return
        # Every UID below UIDNEXT at EXAMINE time was covered by the SEARCH that followed it,
        # so the cursor may jump past expunged tail UIDs and the next pass takes the fast path.
        seen_up_to = max(last_seen, (status.uidnext or 1) - 1)
        with self._engine.begin() as conn:
            self._fence(conn)
            advance_cursor(
                conn,
                box.name,
                folder,
                uidvalidity=status.uidvalidity,
                last_uid=seen_up_to,
                highestmodseq=status.highestmodseq,
            )
            state.folder_ok(conn, box.name, folder)
        outcome.cursor = state.Cursor(status.uidvalidity, seen_up_to, status.highestmodseq)
        log.info(
            "folder.synced",
            mailbox=box.name,
            folder=folder,
            captured=outcome.captured,
            skipped=outcome.skipped,
            quarantined=outcome.quarantined,
        )

    def repair_folder(
        self,
        session: MailSession,
        box: MailboxConfig,
        folder: str,
        uidvalidity: int,
        uids: list[int],
        directory: Directory,
    ) -> FolderResult:
        """Capture UIDs below the cursor that never made it (`syncd sync --repair`): the same
        fetch, decision and save as a normal pass; the cursor never moves backwards."""
        outcome = FolderResult(folder)
        if session.examine(folder).uidvalidity != uidvalidity:
            return outcome  # the folder was renumbered since verify: the next sync re-reads it
        for uid_batch in chunks(sorted(uids), self._config.capture.batch_size):
            batch = self._read_batch(
                session, box, folder, uidvalidity, list(uid_batch), directory, False
            )
            self._save(batch, outcome)
        log.info(
            "folder.repaired",
            mailbox=box.name,
            folder=folder,
            captured=outcome.captured,
            skipped=outcome.skipped,
            quarantined=outcome.quarantined,
        )
        return outcome

    def _save(self, batch: FolderBatch, outcome: FolderResult) -> None:
        """Commit a batch with its cursor (split if the store refuses a value) and count it."""
        saved = save_or_split(self._engine, batch, fence=self._fence)
        outcome.captured += saved.captured
        outcome.skipped += batch.skipped
        outcome.quarantined += len(batch.quarantined) + len(saved.quarantined)

    def _batches(
        self, session: MailSession, first_uid: int, uidnext: int | None
    ) -> Iterator[list[int]]:
        """The new UIDs, a batch at a time, in UID order."""
        for uids in self._uid_windows(session, first_uid, uidnext):
            for uid_batch in chunks(uids, self._config.capture.batch_size):
                yield list(uid_batch)

    @staticmethod
    def _uid_windows(
        session: MailSession, first_uid: int, uidnext: int | None
    ) -> Iterator[list[int]]:
        """New UIDs, a window of the UID space at a time: memory stays flat however big the folder."""
        if uidnext is None:  # a server without UIDNEXT: one search to the end
            yield session.uids_from(first_uid)
            return
        for low in range(first_uid, uidnext, UID_WINDOW):
            found = session.uids_from(low, min(low + UID_WINDOW, uidnext) - 1)
            if found:
                yield found

    def _read_batch(
        self,
        session: MailSession,
        box: MailboxConfig,
        folder: str,
        uidvalidity: int,
        uids: list[int],
        directory: Directory,
        reidentify: bool,
        fetched: list[FetchedMessage] | None = None,
    ) -> FolderBatch:
        """Fetch (unless ``fetched`` already) and process one batch of UIDs; nothing is
        written yet."""
        batch = self._new_batch(box, folder, uidvalidity, uids)
        # The message parser and the capture decisions, only once there is mail to read: a
        # pass over unchanged folders (most polls, and `syncd sync` then) never loads them.
        from syncd.engine.imap.pipeline import process

        to_fetch = self._reidentify(session, uids, batch) if reidentify else uids
        policy = self._policy(box)
        messages = session.fetch(to_fetch) if fetched is None else fetched
        self._collect(batch, (process(message, policy, directory) for message in messages))
        return batch

    def _read_in_turn(
        self,
        session: MailSession,
        box: MailboxConfig,
        folder: str,
        uidvalidity: int,
        directory: Directory,
        reidentify: bool,
        stream: Iterable[tuple[list[int], list[FetchedMessage] | None]],
    ) -> Iterator[tuple[list[int], FolderBatch]]:
        """The batches of ``stream`` processed in this thread, each before it is saved."""
        for uids, fetched in stream:
            batch = self._read_batch(
                session, box, folder, uidvalidity, uids, directory, reidentify, fetched
            )
            yield uids, batch

    def _parsed_ahead(
        self,
        worker: ParseWorker,
        stream: Iterable[tuple[list[int], list[FetchedMessage] | None]],
        box: MailboxConfig,
        folder: str,
        uidvalidity: int,
    ) -> Iterator[tuple[list[int], FolderBatch]]:
        """The batches of ``stream`` processed by ``worker``, each handed out once the next
        one is in the worker's hands: the caller saves a batch while the next is parsed.
        A batch parsed is a batch saved: should taking the next one from the stream fail
        (its FETCH, a Ctrl-C while waiting for it), the batch in hand is handed out first,
        so the cursor ends where the in-process pass would have left it."""
        ready: tuple[list[int], FolderBatch] | None = None
        items = iter(stream)
        while True:
            try:
                item = next(items, None)
            except BaseException:
                if ready is not None:
                    yield ready
                raise
            if item is None:
                break
            uids, fetched = item
            assert fetched is not None  # a backlog's stream is always fetched ahead
            worker.submit(fetched)
            if ready is not None:
                yield ready
            batch = self._new_batch(box, folder, uidvalidity, uids)
            self._collect(batch, worker.outcomes())
            ready = (uids, batch)
        if ready is not None:
            yield ready

    def _new_batch(
        self, box: MailboxConfig, folder: str, uidvalidity: int, uids: list[int]
    ) -> FolderBatch:
        return FolderBatch(
            mailbox=box.name,
            folder=folder,
            uidvalidity=uidvalidity,
            last_uid=uids[-1],
            highestmodseq=None,  # set with the final cursor, once the whole folder is read
            plus_addressing=self._config.capture.plus_addressing,
        )

    def _policy(self, box: MailboxConfig) -> Policy:
        from syncd.engine.imap.pipeline import Policy

        capture = self._config.capture
        return Policy(box.owner, self._config.internal_domains, capture.store, capture.only_matched)

    def _collect(self, batch: FolderBatch, outcomes: Iterable[Outcome]) -> None:
        """Each message's outcome into the batch that writes it."""
        from syncd.engine.imap.pipeline import Quarantined, Skipped

        for result in outcomes:
            if isinstance(result, Skipped):
                batch.skipped += 1
                batch.skipped_uids.append((result.uid, skip_rule(result.reason)))
                if result.queued is not None:
                    batch.queued_only.append(result.queued)
            elif isinstance(result, Quarantined):
                batch.quarantined.append((result.uid, result.reason))
                log.warning(
                    "message.quarantined",
                    mailbox=batch.mailbox,
                    folder=batch.folder,
                    uid=result.uid,
                    reason=result.reason,
                )
            else:
                batch.captured.append(result)

    def _reidentify(self, session: MailSession, uids: list[int], batch: FolderBatch) -> list[int]:
        """After a UIDVALIDITY change, attach known messages by Message-ID without refetching them."""
        batch.reidentifying = True
        headers = session.fetch_message_ids(uids)
        keys: dict[int, str] = {}
        for uid, raw in headers.items():
            key = reidentified_key(raw)
            if key is not None:
                keys[uid] = key
        with self._engine.connect() as conn:
            stored = record_ids(conn, keys.values())
        batch.known = [(uid, key) for uid, key in keys.items() if key in stored]
        known_uids = {uid for uid, _ in batch.known}
        return [uid for uid in uids if uid not in known_uids]


@dataclass(slots=True)
class SavedBatch:
    captured: int = 0
    quarantined: list[tuple[int, str]] = field(default_factory=list)  # (uid, reason)


def save_or_split(
    engine: Engine, batch: FolderBatch, *, fence: Callable[[Connection], None] | None = None
) -> SavedBatch:
    """Commit ``batch`` with its cursor; if the database refuses its values, split it.

    Values are bounded before they get here, so this is the net for what bounding did
    not foresee.  The halves are committed in UID order, each in its own transaction
    with the cursor at its own end, until the message the database refuses is alone: it
    is quarantined and everything else commits.  The cursor therefore never passes a
    message that is neither stored nor quarantined; a crash between parts leaves it at
    the last committed part, and the replay inserts nothing twice.  Errors that are not
    about the values (a lost connection, a lock, a bug) propagate and quarantine nothing.

    ``fence`` runs first in every transaction (a lease check): whatever it raises
    propagates, so a part is never committed without it.
    """
    saved = SavedBatch()
    try:
        with engine.begin() as conn:
            if fence is not None:
                fence(conn)
            saved.captured = save_batch(conn, batch)
        return saved
    except Exception as err:
        reason = refused_values(err)
        uids = batch.uids()
        if reason is None or not uids:  # not the values, or only the cursor was written
            raise
    halves = batch.halves()
    if halves is None:
        (uid,) = uids
        with engine.begin() as conn:
            if fence is not None:
                fence(conn)
            save_batch(conn, batch.as_quarantined(uid, reason))
        saved.quarantined.append((uid, reason))
        log.warning(
            "message.quarantined",
            mailbox=batch.mailbox,
            folder=batch.folder,
            uid=uid,
            reason=reason,
        )
        return saved
    log.warning(
        "batch.split",
        mailbox=batch.mailbox,
        folder=batch.folder,
        first_uid=uids[0],
        last_uid=uids[-1],
        reason=reason,
    )
    for half in halves:
        part = save_or_split(engine, half, fence=fence)
        saved.captured += part.captured
        saved.quarantined.extend(part.quarantined)
    return saved


def reidentified_key(raw: bytes) -> str | None:
    """The record key of a message from its fetched Message-ID field: read with the same
    caps (read_header_section) and bounds (bound_id) as capture reads it, or an id near a
    cap would re-identify to a different key than the one it was stored under."""
    ids = parse_message_ids((read_header_section(raw).fields.get("message-id") or [""])[0])
    return email_key(bound_id(ids[0])) if ids else None
