"""A backlog's messages parsed and decided in a forked process of its own (issue #20).

In one process a backfill's three stages take turns on one GIL: the read-ahead thread's
FETCH (prefetch.py) turns imaplib's answer into bytes, the pass parses and decides each
message (``pipeline.process``, the largest share), then saves the batch.  Here
``process`` runs in a child forked for the folder's backlog, a batch at a time, while the
parent saves the batch before it: the two run on two cores.  The child is forked, not
spawned, so it starts in milliseconds with the policy and directory of this pass already
in memory, and it only ever runs ``process`` and works out each new record's search index
entry (``store.capture.index_entry``): the IMAP session, the database and the log context
stay the parent's.  What crosses the pipe is the fetched messages out and the outcomes
back (pickled: about 4 and 4 microseconds a message in the parent, against about 150 of
parsing, deciding and indexing it no longer does).

The outcomes are those ``process`` returns in the parent, message for message: the same
function on the same bytes.  Should the child fail (an exception ``process`` does not turn
into a quarantine entry, a crash, a kill), the parent runs the batch itself, so the error
is raised where the loop would have raised it, and every later batch is parsed in the
parent: a broken child never costs a message.  A child that does not answer within a
generous deadline is taken as hung, killed, and treated the same; a fork that fails (no
fork on this platform, EAGAIN at a process or memory limit) leaves the whole backlog to
the parent.

Bounded: one batch in the child, at most one more waiting in the pipe.  Forking is only
safe while the forking thread is the only one running Python that the child needs, so
``syncd sync`` (one thread, the read-ahead started after the fork) uses it and the
daemon, with its threads, does not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
import operator
import pickle
import signal
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from syncd.connectors.base import FetchedMessage
from syncd.domain.capture import Participant
from syncd.domain.items import CapturedMessage
from syncd.domain.matching import Directory, Match
from syncd.engine.imap.pipeline import Outcome, Policy, Skipped, process
from syncd.logs import get_logger
from syncd.store.capture import index_entry

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

log = get_logger("syncd.sync")

# A batch is at most batch_size messages of at most the fetch prefix each, parsed in linear
# time: a child that has not left this long after being told to has hung.
_EXIT_WAIT_S = 10.0
# How long the parent waits for a batch's outcomes before it takes the child for hung (a
# SIGSTOP, a lock some other thread held at the fork) and parses the batch itself: far
# above the worst batch (about 150 microseconds a message, a few ms for a hostile one).
_MIN_WAIT_S = 60.0
_WAIT_PER_MESSAGE_S = 0.5


# The pipe carries the messages as plain tuples and a CapturedMessage as its constructor's
# arguments: a slotted dataclass's default pickling calls dataclasses.fields() for every
# object, which tripled the parent's share of the cost.  Only this process's own child is
# ever unpickled.
_FETCHED_FIELDS = operator.attrgetter(*(f.name for f in dataclasses.fields(FetchedMessage)))
_CAPTURED_FIELDS = operator.attrgetter(*(f.name for f in dataclasses.fields(CapturedMessage)))


def _captured_args(msg: CapturedMessage) -> tuple[type[CapturedMessage], tuple[Any, ...]]:
    return CapturedMessage, _CAPTURED_FIELDS(msg)


_DISPATCH: dict[type, Callable[[Any], Any]] = {CapturedMessage: _captured_args}


def _dump_outcomes(outcomes: list[Outcome]) -> bytes:
    """``outcomes`` pickled, each distinct (participant, match) pair once: they are
    immutable, and a batch names the same few people (its owner at least) again and again."""
    same: dict[tuple[Participant, Match], tuple[Participant, Match]] = {}
    for outcome in outcomes:
        msg = outcome.queued if isinstance(outcome, Skipped) else outcome
        if isinstance(msg, CapturedMessage):
            msg.participants = [same.setdefault(pair, pair) for pair in msg.participants]
            if msg is outcome:  # a record: its index entry is worked out here, not in the save
                msg.indexed = index_entry(msg)
    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(outcomes)
    return out.getvalue()


def _serve(conn: Connection, other: Connection, policy: Policy, directory: Directory) -> None:
    """The child: outcomes for each batch received, until the parent closes the pipe."""
    other.close()  # the parent's end: once the parent closes its copy, recv() sees the end
    # Ctrl-C reaches the whole process group: the parent stops the pass and closes the
    # pipe, which ends this loop; a KeyboardInterrupt here would only print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        # The parent's own bytes (this child is its fork), never anything from outside.
        items = pickle.loads(data)  # noqa: S301
        del data  # a batch's bodies once, not twice, while it is parsed
        batch = [FetchedMessage(*item) for item in items]
        del items
        try:
            answer = _dump_outcomes([process(m, policy, directory) for m in batch])
        except Exception:
            answer = b""  # the parent runs this batch again and raises what it raises
        try:
            conn.send_bytes(answer)
        except OSError:  # the parent left without waiting (a stop): nothing to answer
            return


class ParseWorker:
    """``process`` over a batch at a time in a forked child; ``submit`` then ``outcomes``."""

    def __init__(
        self,
        policy: Policy,
        directory: Directory,
        *,
        min_wait_s: float = _MIN_WAIT_S,
        wait_per_message_s: float = _WAIT_PER_MESSAGE_S,
    ) -> None:
        self._policy = policy
        self._directory = directory
        self._min_wait_s = min_wait_s
        self._wait_per_message_s = wait_per_message_s
        self._pending: list[FetchedMessage] | None = None
        self._conn: Connection | None = None
        self._child: BaseProcess | None = None
        self._alive = False
        self.lost = False  # the child failed, hung, died or never started: parsed here since
        self.exitcode: int | None = None  # the child's, once closed (negative: a signal)
        try:
            self._start()
        except (OSError, ValueError) as err:
            # No fork here (ValueError), or none to be had now (EAGAIN: the process or
            # memory limit): the backlog is parsed in this process, as without a worker.
            self.lost = True
            log.warning("parse_worker.unavailable", error=f"{type(err).__name__}: {err}")

    def _start(self) -> None:
        # Imported here: a pass with no backlog (the usual poll) never pays for it.
        from multiprocessing import get_context

        context = get_context("fork")
        conn, child_end = context.Pipe()
        # The heap as it is now (imports, directory, config) stays out of both collectors
        # until the backlog is done: the child's would touch every inherited object and copy
        # most pages the two could share, and the parent's full collections would scan it
        # again and again (a tenth of the parent's CPU in a 20,000-message backfill).
        gc.freeze()
        child = context.Process(
            target=_serve,
            args=(child_end, conn, self._policy, self._directory),
            name="syncd-parse",
            daemon=True,
        )
        try:
            child.start()
        except BaseException:
            gc.unfreeze()
            conn.close()
            raise
        finally:
            child_end.close()
        self._conn, self._child = conn, child
        self._alive = True

    def submit(self, fetched: list[FetchedMessage]) -> None:
        """Hand a batch to the child; its outcomes come from the next ``outcomes()``."""
        assert self._pending is None, "one batch at a time"
        self._pending = fetched
        if self._alive and self._conn is not None:
            try:
                items = [_FETCHED_FIELDS(m) for m in fetched]
                self._conn.send_bytes(pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL))
            except (OSError, ValueError) as err:
                self._lost(err)

    def outcomes(self) -> list[Outcome]:
        """The submitted batch's outcomes, in order: the child's, or the parent's own."""
        batch, self._pending = self._pending, None
        assert batch is not None, "nothing submitted"
        if self._alive and self._conn is not None:
            wait = max(self._min_wait_s, len(batch) * self._wait_per_message_s)
            try:
                if not self._conn.poll(wait):
                    raise TimeoutError(f"no outcomes in {wait:.0f} s: the child is taken as hung")
                answer = self._conn.recv_bytes()
            except (EOFError, OSError) as err:  # TimeoutError included
                self._lost(err)
            else:
                if answer:
                    # Bytes of this process's own child (a fork), never from outside.
                    found: list[Outcome] = pickle.loads(answer)  # noqa: S301
                    return found
                self._lost(None)
        return [process(m, self._policy, self._directory) for m in batch]

    def _lost(self, err: BaseException | None) -> None:
        self._alive = False
        self.lost = True
        if self._child is not None and isinstance(err, TimeoutError):
            self._child.kill()  # hung: it would never read the pipe's end
            self._child.join(_EXIT_WAIT_S)
        log.warning(
            "parse_worker.lost",
            error=f"{type(err).__name__}: {err}" if err else "the parse failed in the child",
            exitcode=self._child.exitcode if self._child is not None else None,
        )

    def close(self) -> None:
        """Close the pipe (the child leaves at its next read or answer) and wait for it."""
        if self._conn is None or self._child is None or self._conn.closed:
            return
        self._alive = False
        self._conn.close()
        self._child.join(_EXIT_WAIT_S)
        if self._child.is_alive():
            self._child.kill()
            self._child.join()
        self.exitcode = self._child.exitcode
        with contextlib.suppress(ValueError):
            self._child.close()
        gc.unfreeze()

    def __enter__(self) -> ParseWorker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
