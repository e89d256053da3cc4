"""A `syncd run` whose stop runs into its hard limit leaves with STOP_OVERRAN_EXIT (75),
which the shipped unit lists in SuccessExitStatus: `systemctl stop` of such a stop is
clean, yet the exit status tells it from a stop that completed (exit 0).

A real process: the hard limit brought down to 1 s and a step of the stop after the
release (the LOGOUTs) hanging, as the 5,000 sessions' did at load 33."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from syncd.cli.cmd_run import STOP_OVERRAN_EXIT

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "syncd.service"

INJECT = textwrap.dedent(
    """
    import sys, time
    from syncd.engine import daemon as d
    from syncd.engine.imap.sessions import SessionCache
    d.STOP_HARD_AFTER = 1.0
    SessionCache.close_all = lambda self, within=0: time.sleep(30)  # a step after the release hangs
    from syncd.cli.main import main
    sys.argv = ["syncd", "--config", sys.argv[1], "run"]
    main()
    """
)


def test_a_stop_past_its_hard_limit_exits_with_the_code_the_unit_calls_success(
    tmp_path: Path,
) -> None:
    config = tmp_path / "syncd.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n\n'
        '[organization]\ninternal_domains = ["example.com"]\n'
    )
    log = tmp_path / "stderr.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", INJECT, str(config)], stderr=err, cwd=tmp_path
        )
    try:
        deadline = time.monotonic() + 60
        while b"daemon.started" not in log.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = log.read_text()
    assert "daemon.stop_overran" in text, text[-3000:]
    assert code == STOP_OVERRAN_EXIT, (code, text[-3000:])
    assert took < 10, took  # left at the hard limit, not at the hung step's end
    listed = re.findall(r"^SuccessExitStatus=(.*)$", UNIT.read_text(), re.MULTILINE)
    assert str(STOP_OVERRAN_EXIT) in " ".join(listed).split(), listed
