"""syncd/cli/plain.py prints what rich prints: tables and lines, into a pipe and on a
terminal, whatever the text (rich's own text where it hands over to rich)."""

from __future__ import annotations

import io
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table as RichTable

from syncd.cli import plain
from syncd.cli.plain import Screen, Table
from syncd.cli.present import status as view
from syncd.store.status_read import DaemonInfo

HEADERS = ["mailbox", "folder", "state", "last success", "captured", "last error"]
# Plain text, and what rich changes or measures otherwise: markup, emoji codes, escapes,
# control characters, tabs, combining marks, wide characters.
CHARACTERS = [*"abzAZ09 -.:/@#+_", "[", "]", "\\", "é", "ß", "\xa0", "\xad", "ʼ", "\u0301"]
CHARACTERS += ["中", "😀", "\t", "\n", "\r", "\x07", "\x1b"]
WORDS = [
    ":100:",
    ":+1:",
    ":smile:",
    "09:30:15",
    "[bold]x",
    "[/x]",
    "[AUTH] no",
    "a\\[b]",
    "x\\[2024]",
]
TEXT = st.text(alphabet=st.sampled_from(CHARACTERS), max_size=14) | st.sampled_from(WORDS)


def _rich(width: int, terminal: bool, what: Any, markup: bool = True) -> str:
    out = io.StringIO()
    console = Console(
        file=out, width=width, force_terminal=terminal, soft_wrap=True, highlight=False
    )
    try:
        console.print(what, markup=markup)
    except Exception as err:  # rich's own failure ("[/x]" closes no tag) is the answer
        return f"raised {type(err).__name__}"
    return out.getvalue()


def _plain(width: int, terminal: bool, what: Any, markup: bool = True) -> str:
    out = io.StringIO()
    try:
        Screen(out, width=width, terminal=terminal).print(what, markup=markup)
    except Exception as err:
        return f"raised {type(err).__name__}"
    return out.getvalue()


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.lists(TEXT, min_size=6, max_size=6), max_size=4),
    width=st.sampled_from([plain.UNWRAPPED_WIDTH, 200, 60, 30]),
    terminal=st.booleans(),
)
def test_a_table_reads_as_rich_draws_it(rows: list[list[str]], width: int, terminal: bool) -> None:
    ours, theirs = Table(*HEADERS), RichTable(*HEADERS)
    for cells in rows:
        ours.add_row(*cells)
        theirs.add_row(*cells)
    assert _plain(width, terminal, ours) == _rich(width, terminal, theirs)


@settings(max_examples=300, deadline=None)
@given(
    line=st.lists(TEXT, max_size=3).map(" ".join),
    markup=st.booleans(),
    terminal=st.booleans(),
)
def test_a_line_reads_as_rich_prints_it(line: str, markup: bool, terminal: bool) -> None:
    assert _plain(80, terminal, line, markup) == _rich(80, terminal, line, markup)


def test_a_plain_table_is_printed_without_rich() -> None:
    table = Table(*HEADERS)
    table.add_row("alice", "", "ok", "2026-03-01T09:30:15+00:00", "12", "")
    table.add_row("", "Entwürfe", "error", "-", "3", "[NONEXISTENT] no such folder")
    screen = Screen(io.StringIO(), width=200, terminal=True)
    screen.print(table)
    screen.print("a line: 10:20:30", markup=False)
    assert screen._rich is None  # rich would have been made to print any of it
    assert screen.file.getvalue() == _rich(200, True, _rich_table(table)) + _rich(
        200, True, "a line: 10:20:30", markup=False
    )
    # Too wide for the terminal: rich shrinks the columns, so rich prints it.
    narrow = Screen(io.StringIO(), width=40, terminal=True)
    narrow.print(table)
    assert narrow._rich is not None
    assert narrow.file.getvalue() == _rich(40, True, _rich_table(table))


def _rich_table(table: Table) -> RichTable:
    out = RichTable(*table.headers)
    for cells in table.rows:
        out.add_row(*cells)
    return out


class _AsBefore:
    """The view printed through rich's console and table, as it was before plain.py."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def print(self, what: str | Table, *, markup: bool | None = None) -> None:
        if isinstance(what, Table):
            self.console.print(_rich_table(what))
        else:
            self.console.print(what, markup=markup)


def test_the_status_view_reads_as_rich_printed_it() -> None:
    now = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    at = now - timedelta(minutes=3)
    boxes = [
        {
            "mailbox": name, "state": "ok", "last_attempt_at": at, "last_success_at": at,
            "last_error": error, "last_error_kind": None, "messages_captured": 7,
            "folders": [
                {"folder": "INBOX", "last_success_at": at, "last_error": None, "messages_captured": 5},
                {"folder": "Sent", "last_success_at": None, "last_error": error, "messages_captured": 2},
            ],
            "quarantined": [{"folder": "INBOX", "uid": 12, "reason": "too big", "at": at}],
        }
        for name, error in (("rep0", None), ("rep1", "[AUTHENTICATIONFAILED] Invalid credentials"))
    ]  # fmt: skip
    daemons = [
        DaemonInfo(f"{n}aaa1111", f"host-{n}", n, now - timedelta(hours=1), now, "running")
        for n in (1, 2)
    ]
    doc = view.document(boxes, [], daemons, {}, now)
    for terminal, width in ((False, plain.UNWRAPPED_WIDTH), (True, 200), (True, 50)):
        ours = io.StringIO()
        view.show(Screen(ours, width=width, terminal=terminal), doc)
        theirs = io.StringIO()
        console = Console(
            file=theirs, width=width, force_terminal=terminal, soft_wrap=True, highlight=False
        )
        view.show(_AsBefore(console), doc)  # type: ignore[arg-type]
        assert ours.getvalue() == theirs.getvalue()
        assert "│ rep1    │" in ours.getvalue() or width == 50


def test_what_plain_takes_for_one_cell_is_one_cell_in_rich() -> None:
    narrow = [chr(c) for c in range(0x110000) if plain._NARROW.fullmatch(chr(c))]
    assert len(narrow) == 0x7F - 0x20 + 0x300 - 0xA0
    assert {cell_len(c) for c in narrow} == {1}


def test_the_digit_emoji_are_rich_s() -> None:
    from rich._emoji_codes import EMOJI

    assert {name for name in EMOJI if name.isdigit()} == plain.DIGIT_EMOJI


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty", [True, False])
@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"TERM": "xterm-256color"},
        {"TERM": "dumb"},
        {"TERM": "unknown", "COLUMNS": "120"},
        {"TERM": "dumb", "COLUMNS": "120", "LINES": "40"},
        {"COLUMNS": "132"},
        {"COLUMNS": "wide"},
        {"FORCE_COLOR": "1"},
        {"FORCE_COLOR": ""},
        {"TTY_COMPATIBLE": "0", "FORCE_COLOR": "1"},
        {"TTY_COMPATIBLE": "1"},
        {"NO_COLOR": "1", "COLUMNS": "90"},
    ],
)
def test_terminal_width_and_bold_are_found_as_rich_finds_them(
    environ: dict[str, str], tty: bool
) -> None:
    file = _Tty() if tty else io.StringIO()
    console = Console(file=file, _environ=environ, soft_wrap=True, highlight=False)
    screen = Screen(file, environ=environ)
    assert screen.terminal == console.is_terminal
    if console.is_terminal:  # off a terminal console() sets the unwrapped width
        assert screen.width == console.width
    assert screen.bold == (console.color_system is not None)


@pytest.mark.parametrize("terminal", [False, True])
def test_a_backslash_before_a_bracket_prints_as_rich_prints_it(terminal: bool) -> None:
    """rich's markup turns every escaped bracket into a bracket, a tag after it or not."""
    error = r"NO [CANNOT] bad name Archive\[2024]"
    ours, theirs = Table(*HEADERS), RichTable(*HEADERS)
    for table in (ours, theirs):
        table.add_row("alice", "", "failing", "-", "0", error)
    assert _plain(200, terminal, ours) == _rich(200, terminal, theirs)
    assert _plain(80, terminal, r"see \[1]") == _rich(80, terminal, r"see \[1]")


def test_a_markup_tag_across_lines_prints_as_rich_prints_it() -> None:
    line = "one [bold\nred]two"
    assert _plain(80, False, line) == _rich(80, False, line)


def test_no_standard_output_prints_nothing_and_raises_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`syncd status >&-` (monitoring that wants the exit code only): sys.stdout is None."""
    monkeypatch.setattr(sys, "stdout", None)
    screen = Screen()
    screen.print("daemon: NOT RUNNING")
    table = Table(*HEADERS)
    table.add_row("alice", "INBOX", "ok", "-", "0", "")
    screen.print(table)


def test_a_terminal_of_no_width_prints_as_rich_prints_it() -> None:
    line = "daemon: running, pid 1 on h, heartbeat 0s ago: ok"
    assert _plain(0, True, line, markup=False) == _rich(0, True, line, markup=False)
