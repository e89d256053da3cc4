"""The backlog's parse worker (engine/imap/parse_worker.py): the outcomes a forked child
returns are those ``process`` returns in this process, message for message, on hostile
and ordinary mail; a child that fails or dies costs no message and raises nothing new."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from syncd.connectors.base import FetchedMessage
from syncd.domain.matching import Directory
from syncd.engine.imap import parse_worker as worker_module
from syncd.engine.imap.parse_worker import ParseWorker
from syncd.engine.imap.pipeline import Outcome, Policy, Skipped, process
from syncd.store.capture import CapturedMessage, index_entry
from tests.servers.sample import generate

CORPUS = Path(__file__).parent.parent / "corpus" / "mail"
POLICY = Policy("alice@example.com", frozenset({"example.com"}), keep="full")


def _directory() -> Directory:
    directory = Directory()
    directory.add_contact("wile@acme.com", 1, 1)
    directory.add_domain("acme.com", 1)
    directory.add_domain("globex.co.uk", 2)
    directory.exclusions.add("@spam.example")
    return directory


def _messages() -> list[FetchedMessage]:
    raws = [path.read_bytes() for path in sorted(CORPUS.glob("*.eml"))]
    raws += [m.raw for m in generate(60, seed=3)]
    raws.append(b"Subject: no address at all\r\n\r\nbody\r\n")  # quarantined
    return [
        FetchedMessage(uid, len(raw), None, raw, headers_only=uid % 7 == 0)
        for uid, raw in enumerate(raws, start=1)
    ]


def _without_index(outcomes: list[Outcome]) -> list[Outcome]:
    """The outcomes with the worker's precomputed index entries checked and taken off."""
    for outcome in outcomes:
        if isinstance(outcome, CapturedMessage):
            assert outcome.indexed is not None
            entry = outcome.indexed
            outcome.indexed = None
            assert entry == index_entry(outcome)
        elif isinstance(outcome, Skipped) and outcome.queued is not None:
            assert outcome.queued.indexed is None
    return outcomes


def test_the_child_returns_what_process_returns_here() -> None:
    messages = _messages()
    directory = _directory()
    expected = [process(m, POLICY, directory) for m in messages]
    kinds = {type(o).__name__ for o in expected}
    assert kinds == {"CapturedMessage", "Skipped", "Quarantined"}, kinds
    with ParseWorker(POLICY, directory) as worker:
        got: list[Outcome] = []
        for start in range(0, len(messages), 25):
            worker.submit(messages[start : start + 25])
            got += worker.outcomes()
    assert _without_index(got) == expected
    assert worker.exitcode == 0  # it left when the pipe closed, nothing killed


def test_a_child_that_dies_costs_no_message() -> None:
    messages = _messages()
    directory = _directory()
    expected = [process(m, POLICY, directory) for m in messages]
    with ParseWorker(POLICY, directory) as worker:
        worker.submit(messages[:10])
        first = worker.outcomes()
        pid = worker._child.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        worker._child.join(10)
        worker.submit(messages[10:])
        rest = worker.outcomes()  # parsed here instead
        assert worker.lost
    assert _without_index(first) + rest == expected


def test_an_error_in_the_child_is_raised_here_where_the_loop_would_raise_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_args: object) -> Outcome:
        raise RuntimeError("a bug in the capture decision")

    monkeypatch.setattr(worker_module, "process", broken)
    with ParseWorker(POLICY, _directory()) as worker:
        worker.submit(_messages()[:3])
        with pytest.raises(RuntimeError, match="a bug in the capture decision"):
            worker.outcomes()


def _no_fork() -> int:
    raise BlockingIOError(11, "Resource temporarily unavailable")


def _no_fork_method(method: str | None = None) -> object:
    raise ValueError(f"cannot find context for {method!r}")


@pytest.mark.parametrize(
    ("module", "name", "failing"),
    [
        pytest.param(os, "fork", _no_fork, id="a fork that fails (EAGAIN)"),
        pytest.param(
            multiprocessing, "get_context", _no_fork_method, id="no fork on this platform"
        ),
    ],
)
def test_a_worker_that_cannot_start_leaves_the_batches_to_this_process(
    monkeypatch: pytest.MonkeyPatch, module: object, name: str, failing: object
) -> None:
    monkeypatch.setattr(module, name, failing)
    messages = _messages()
    directory = _directory()
    expected = [process(m, POLICY, directory) for m in messages]
    with ParseWorker(POLICY, directory) as worker:
        assert worker.lost
        worker.submit(messages[:10])
        got = worker.outcomes()
        worker.submit(messages[10:])
        got += worker.outcomes()
    assert got == expected


def test_a_child_that_hangs_is_killed_and_its_batch_parsed_here(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parent = os.getpid()
    real = worker_module.process

    def hangs_in_the_child(*args: Any) -> Outcome:
        if os.getpid() != parent:
            time.sleep(3600)  # a child stopped or stuck on a lock held at the fork
        return real(*args)

    monkeypatch.setattr(worker_module, "process", hangs_in_the_child)
    messages = _messages()
    directory = _directory()
    expected = [process(m, POLICY, directory) for m in messages]
    with ParseWorker(POLICY, directory, min_wait_s=1.0, wait_per_message_s=0.0) as worker:
        started = time.monotonic()
        worker.submit(messages[:10])
        got = worker.outcomes()
        assert time.monotonic() - started < 30  # the deadline, not the child's hour
        assert worker.lost
        worker.submit(messages[10:])
        got += worker.outcomes()
    assert got == expected
    assert worker.exitcode == -signal.SIGKILL
