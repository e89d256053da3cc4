"""The shipped unit file: valid for systemd and hardened (exposure 2.0 or lower)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "syncd.service"


def _checkable_copy(tmp_path: Path) -> Path:
    # verify insists that ExecStart exists: point it at this checkout's syncd.
    text = UNIT.read_text().replace(
        "/opt/syncd/.venv/bin/syncd", str(Path(sys.executable).parent / "syncd")
    )
    copy = tmp_path / "syncd.service"
    copy.write_text(text)
    return copy


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool is not None, "systemd-analyze is installed by scripts/bootstrap.sh"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60, check=False)


def test_the_unit_file_verifies(tmp_path: Path) -> None:
    result = _analyze("verify", str(_checkable_copy(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "syncd.service" not in result.stderr, result.stderr  # no warning about our unit


def test_the_unit_file_is_hardened(tmp_path: Path) -> None:
    result = _analyze("security", "--offline=true", str(_checkable_copy(tmp_path)))
    found = re.search(r"Overall exposure level for syncd\.service: (\d+\.\d+)", result.stdout)
    assert found is not None, result.stdout + result.stderr
    assert float(found.group(1)) <= 2.0


def test_the_unit_is_a_notify_daemon_with_a_watchdog_and_credentials() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "DynamicUser=yes",
        "StateDirectory=syncd",
        "LoadCredential=",
        "ExecStart=/opt/syncd/.venv/bin/syncd run",
        "CapabilityBoundingSet=\n",
    ):
        assert line in text, line
