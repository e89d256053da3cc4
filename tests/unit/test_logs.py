"""syncd's loggers import structlog only for a line that is written (issue #20: a one-shot
command that logs nothing does not pay for structlog and the rich it loads), and write
every line as structlog configured by ``logs.configure`` would."""

from __future__ import annotations

import json
import subprocess
import sys


def _run(code: str) -> tuple[list[str], str]:
    """Run ``code`` in a fresh interpreter (logging is process-wide); its stdout lines and
    its stderr (where the log lines go)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.splitlines(), done.stderr


PRELUDE = "import sys\nfrom syncd import logs\n"
LOADED = "print('structlog' in sys.modules, 'rich' in sys.modules)\n"


def test_a_line_below_the_level_is_dropped_without_importing_structlog() -> None:
    out, err = _run(
        PRELUDE + "logs.configure('WARNING', json=True, lazy=True)\n"
        "log = logs.get_logger('syncd.probe')\n"
        "log.info('probe.quiet', n=1)\nlog.debug('probe.quieter')\n" + LOADED
    )
    assert out == ["False False"]
    assert err == ""


def test_a_line_at_the_level_is_written_by_structlog_as_configured() -> None:
    out, err = _run(
        PRELUDE + "import logging\n"
        "logs.configure('INFO', json=True, lazy=True)\n"
        "log = logs.get_logger('syncd.probe')\n"
        "log.debug('probe.quiet')\n"
        "log.warning('probe.loud', mailbox='rep', n=2)\n"
        "log.info('probe.again')\n"
        "logging.getLogger('imapclient.probe').info('a standard-library record')\n" + LOADED
    )
    assert out[0].startswith("True ")
    lines = [json.loads(line) for line in err.splitlines()]
    assert [(x["event"], x["level"], x["logger"]) for x in lines] == [
        ("probe.loud", "warning", "syncd.probe"),
        ("probe.again", "info", "syncd.probe"),
        ("a standard-library record", "info", "imapclient.probe"),
    ]
    assert lines[0]["mailbox"] == "rep" and lines[0]["n"] == 2
    assert all(x["timestamp"].endswith("Z") for x in lines)


def test_the_console_renderer_writes_the_same_line_as_before() -> None:
    _, err = _run(
        PRELUDE + "logs.configure('WARNING', json=False, lazy=True)\n"
        "logs.get_logger('syncd.probe').error('probe.failed', kind='credentials')\n"
    )
    (line,) = err.splitlines()
    assert "[error    ] probe.failed" in line
    assert "[syncd.probe] kind=credentials" in line


def test_with_structlog_loaded_every_line_goes_through_it() -> None:
    """structlog's own test capture sees a line the standard-library level would drop, as
    it did when modules held structlog's logger."""
    out, _ = _run(
        PRELUDE + "from structlog.testing import capture_logs\n"
        "logs.configure('WARNING', json=True, lazy=True)\n"
        "with capture_logs() as seen:\n"
        "    logs.get_logger('syncd.probe').info('probe.captured', n=3)\n"
        "print([(e['event'], e['log_level'], e['n']) for e in seen])\n"
    )
    assert out == ["[('probe.captured', 'info', 3)]"]


def test_a_capture_begun_after_a_lazy_configure_sees_every_line() -> None:
    """An in-process command leaves the deferred formatter behind (structlog never loaded);
    a test's capture_logs entered later must still see every line: the first line must
    not reconfigure structlog under the capture."""
    out, err = _run(
        PRELUDE + "logs.configure('WARNING', json=True, lazy=True)\n"
        "from structlog.testing import capture_logs\n"
        "with capture_logs() as seen:\n"
        "    logs.get_logger('syncd.probe').info('probe.below')\n"
        "    logs.get_logger('syncd.other').error('probe.above', n=2)\n"
        "    logs.get_logger('syncd.probe').error('probe.again')\n"
        "print([(e['event'], e['log_level']) for e in seen])\n"
    )
    assert out == ["[('probe.below', 'info'), ('probe.above', 'error'), ('probe.again', 'error')]"]
    assert err == ""
