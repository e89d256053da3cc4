"""The notices naming long tests while they run (tests/progress.py)."""

from __future__ import annotations

import time

from tests.progress import AGAIN, FIRST, LongTestNotices


def test_a_long_test_is_named_after_the_first_wait_and_then_at_each_further_one() -> None:
    notices = LongTestNotices(print)
    notices.started("tests/a.py::test_slow", 100.0)
    notices.started("tests/b.py::test_quick", 101.0)
    assert notices.due(100.0 + FIRST - 1) == []
    notices.finished("tests/b.py::test_quick")
    assert notices.due(100.0 + FIRST) == [
        f"still running after {FIRST:.0f} s: tests/a.py::test_slow"
    ]
    assert notices.due(100.0 + FIRST + 1) == []  # once per wait, not once per check
    later = 100.0 + FIRST + AGAIN
    assert notices.due(later) == [
        f"still running after {FIRST + AGAIN:.0f} s: tests/a.py::test_slow"
    ]
    notices.finished("tests/a.py::test_slow")
    assert notices.due(later + 10 * AGAIN) == []


def test_the_lines_are_written_while_the_test_runs() -> None:
    lines: list[str] = []
    notices = LongTestNotices(lines.append)
    notices.started("tests/a.py::test_slow", time.monotonic() - FIRST)
    notices.start()
    try:
        for _ in range(50):
            if lines:
                break
            notices._stop.wait(0.1)
    finally:
        notices.stop()
    assert lines and lines[0].endswith("tests/a.py::test_slow")
