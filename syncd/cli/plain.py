"""Lines and tables for people, printed without rich where rich would print the same text.

``syncd status`` runs every minute under monitoring and often by hand: importing rich and
laying out its table was a quarter of its time (issue #20).  ``Screen`` writes what
``console()`` (syncd/cli/app.py) would write, character for character: the same heavy-head
box, column widths and padding, on a terminal its width and the bold header, into a pipe
or a file nothing wrapped.  What it cannot vouch for it hands to rich, which prints it as
before: a table wider than the terminal (rich shrinks and wraps its columns), text that
rich would change (markup tags, emoji codes, control characters) or whose width in cells
it does not know (anything beyond Latin), an output that is not UTF-8 (rich draws ASCII
boxes), Windows.  tests/unit/test_plain_screen.py holds the two to the same text.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, TextIO

from syncd.cli.app import UNWRAPPED_WIDTH, console

if TYPE_CHECKING:
    from rich.console import Console

# One cell wide in rich and in a terminal: printable ASCII and Latin up to U+02FF (before
# the combining marks); a test checks each against rich's cell widths.
_NARROW = re.compile(r"[\x20-\x7e\xa0-\u02ff]*")
# rich's markup tag (rich/markup.py RE_TAGS), or an escaped bracket ("\\[" prints "[").
_MARKUP = re.compile(r"\[[a-z#/@][^[]*?]|\\\[")
# rich's emoji code (rich/_emoji_replace.py).
_EMOJI_CODE = re.compile(r"(:(\S*?)(?:(?:\-)(emoji|text))?:)")
# The names of rich's emoji made of digits alone: a time's ":30:" is none (a test keeps
# this equal to rich's list).  Any other name rich might know sends the text to rich.
DIGIT_EMOJI = frozenset({"100", "1234"})
BOLD, RESET = "\x1b[1m", "\x1b[0m"


class Table:
    """Headers and rows of text, as ``rich.table.Table(*headers)`` with ``add_row``."""

    def __init__(self, *headers: str) -> None:
        self.headers = list(headers)
        self.rows: list[list[str]] = []

    def add_row(self, *cells: str) -> None:
        assert len(cells) == len(self.headers), (cells, self.headers)
        self.rows.append(list(cells))


class Screen:
    """Standard output for people, as ``console()`` prints it.  ``file``, ``width`` and
    ``terminal`` stand in for what is otherwise found out as rich finds it out."""

    def __init__(
        self,
        file: TextIO | None = None,
        *,
        width: int | None = None,
        terminal: bool | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._given = (file, width, terminal)
        self.file = file if file is not None else sys.stdout
        environ = os.environ if environ is None else environ
        self.terminal = _is_terminal(self.file, environ) if terminal is None else terminal
        if width is not None:
            self.width = width
        else:
            self.width = _terminal_width(environ) if self.terminal else UNWRAPPED_WIDTH
        # rich draws in color (bold headers) on any terminal but a dumb one.
        self.bold = self.terminal and environ.get("TERM", "").lower() not in ("dumb", "unknown")
        encoding = (getattr(self.file, "encoding", "utf-8") or "utf-8").lower()
        # No standard output at all (`syncd status >&-`: monitoring wanting the exit code
        # only) and a terminal of no width: rich prints nothing, and is left to.
        self.plain = (
            self.file is not None
            and self.width >= 1
            and encoding.startswith("utf")
            and sys.platform != "win32"
        )
        self._rich: Console | None = None

    def print(self, what: str | Table, *, markup: bool = True) -> None:
        """``Console.print``: a line (markup off or on, as rich's) or a table."""
        if isinstance(what, Table):
            text = self._table(what) if self.plain else None
            if text is None:
                self.rich().print(_rich_table(what))
                return
        else:
            # rich's tags may span lines: the whole text is looked at, then each line.
            if not (
                self.plain
                and not (markup and _MARKUP.search(what))
                and all(_plain(line, markup) for line in what.split("\n"))
            ):
                self.rich().print(what, markup=markup)
                return
            text = what
        self.file.write(text + "\n")

    def rich(self) -> Console:
        """rich's console for what this one hands over, made as ``console()`` makes it."""
        if self._rich is None:
            if self._given == (None, None, None):
                self._rich = console()
            else:
                from rich.console import Console

                self._rich = Console(
                    file=self.file,
                    width=self.width,
                    force_terminal=self.terminal,
                    soft_wrap=True,
                    highlight=False,
                )
        return self._rich

    def _table(self, table: Table) -> str | None:
        """rich's text of ``table``, or None for rich to print it."""
        every = [table.headers, *table.rows]
        if not all(_plain(cell, markup=True) for row in every for cell in row):
            return None
        widths = [max(len(row[i]) for row in every) for i in range(len(table.headers))]
        if sum(widths) + 3 * len(widths) + 1 > self.width:
            return None  # rich shrinks the columns and wraps their cells

        def rule(left: str, line: str, cross: str, right: str) -> str:
            return left + cross.join(line * (w + 2) for w in widths) + right

        def row(cells: list[str], bar: str, bold: bool = False) -> str:
            if bold:
                padded = [f"{BOLD} {RESET}{BOLD}{c.ljust(w)}{RESET}{BOLD} {RESET}" for c, w in zip(cells, widths, strict=True)]  # fmt: skip
            else:
                padded = [f" {c.ljust(w)} " for c, w in zip(cells, widths, strict=True)]
            return bar + bar.join(padded) + bar

        lines = [rule("┏", "━", "┳", "┓"), row(table.headers, "┃", self.bold)]
        lines.append(rule("┡", "━", "╇", "┩"))
        lines += [row(cells, "│") for cells in table.rows]
        lines.append(rule("└", "─", "┴", "┘"))
        return "\n".join(lines)


def _plain(text: str, markup: bool) -> bool:
    """Whether rich prints ``text`` as it is, one cell per character."""
    if _NARROW.fullmatch(text) is None or (markup and _MARKUP.search(text)):
        return False
    for code in _EMOJI_CODE.finditer(text):
        name = code.group(2).lower()
        if not name.isdigit() or name in DIGIT_EMOJI:
            return False
    return True


def _rich_table(table: Table) -> object:
    from rich.table import Table as RichTable

    out = RichTable(*table.headers)
    for cells in table.rows:
        out.add_row(*cells)
    return out


def _is_terminal(file: TextIO, environ: Mapping[str, str]) -> bool:
    """rich's ``Console.is_terminal`` (rich/console.py), for a command line's output."""
    tty_compatible = environ.get("TTY_COMPATIBLE", "")
    if tty_compatible in ("0", "1"):
        return tty_compatible == "1"
    force_color = environ.get("FORCE_COLOR")
    if force_color is not None:
        return force_color != ""
    isatty = getattr(file, "isatty", None)
    try:
        return False if isatty is None else bool(isatty())
    except ValueError:  # a closed file
        return False


def _terminal_width(environ: Mapping[str, str]) -> int:
    """rich's ``Console.size`` width on a terminal (rich/console.py)."""
    columns = environ.get("COLUMNS")
    given = columns is not None and columns.isdigit()
    lines = environ.get("LINES")
    if given and lines is not None and lines.isdigit():
        return int(columns)  # type: ignore[arg-type]
    if environ.get("TERM", "").lower() in ("dumb", "unknown"):
        return 80
    width = None
    for descriptor in (0, 1, 2):  # stdin, stdout, stderr, as rich asks them
        try:
            width = os.get_terminal_size(descriptor).columns
        except (AttributeError, ValueError, OSError):
            continue
        break
    if given:
        return int(columns)  # type: ignore[arg-type]
    return width or 80
