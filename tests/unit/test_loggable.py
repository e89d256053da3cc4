"""Untrusted text quoted in log lines cannot forge lines or drive the terminal."""

from __future__ import annotations

from typing import Any

import pytest

from syncd.domain import message
from syncd.domain.bounds import loggable
from syncd.domain.limits import MAX_SUBJECT_CHARS


class _Recorder:
    """Stands in for the module's logger: what structlog is configured to do depends on
    which tests ran before, the arguments of the call do not."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def info(self, event: str, **values: Any) -> None:
        self.events.append({"event": event, **values})


def test_a_cut_message_is_logged_without_its_control_characters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = (
        b"From: wile@acme.com\r\nMessage-ID: <a\x1b[31m\x85\x7fb\x0bc@acme.com>\r\n"
        b"Subject: " + b"s" * (MAX_SUBJECT_CHARS + 10) + b"\r\n\r\nbody\r\n"
    )
    recorder = _Recorder()
    monkeypatch.setattr(message, "log", recorder)
    message.parse_message(raw, internal_date=None)
    (cut,) = [e for e in recorder.events if e["event"] == "message.cut"]
    assert cut["message_id"].isprintable() and "\x1b" not in cut["message_id"]
    assert all(c.isprintable() for c in cut["cuts"])


def test_loggable_keeps_printable_text_and_cuts() -> None:
    assert loggable("plain id@x") == "plain id@x"
    assert loggable("a\nb\rc\x1b\u2028d") == "a?b?c??d"
    assert len(loggable("x" * 1000)) == 200
