"""[directory] command: no shell, bounded in time and output, its stderr cleaned, stoppable."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from syncd.engine import directory_sync
from syncd.engine.directory_sync import SourceUnreadable, run_command


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "export.sh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_its_output_is_the_directory(tmp_path: Path) -> None:
    script = _script(tmp_path, 'printf "%s\\n" "$1"\n')
    assert run_command([script, "a;b $HOME"], 10) == b"a;b $HOME\n"  # no shell expands it


def test_too_much_output_is_cut_and_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(directory_sync, "MAX_FILE_BYTES", 10_000)
    with pytest.raises(SourceUnreadable, match="printed more than 10,000 bytes"):
        run_command(["yes"], 10)


def test_a_failure_quotes_its_stderr_cleaned_and_never_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_TOKEN", "s3cr3t-token")
    script = _script(tmp_path, 'printf "bad\\033[31m token\\nforged line" >&2\nexit 4\n')
    with pytest.raises(SourceUnreadable) as caught:
        run_command([script], 10)
    message = caught.value.message
    assert "exited with status 4: bad?[31m token forged line" in message
    assert "\n" not in message and "\x1b" not in message and "s3cr3t" not in message


def test_a_stop_kills_the_command_and_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = _script(tmp_path, f"sleep 60 &\necho $! > {pid_file}\nwait\n")
    started = time.monotonic()

    def child_started() -> bool:  # stopped once the command has its child, not before
        return pid_file.exists() and pid_file.stat().st_size > 0

    with pytest.raises(SourceUnreadable, match="stopped"):
        run_command([script], 60, should_stop=child_started)
    assert time.monotonic() - started < 10  # generous: the point is not 60 s
    child = int(pid_file.read_text())
    for _ in range(50):  # the group was killed; the zombie is reaped by init
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        if Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the command's child outlived it")


def _gone(pid: int) -> bool:
    """The process is dead (or a zombie waiting for init to reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_a_timeout_kills_the_children_a_finished_command_left_holding_its_output(
    tmp_path: Path,
) -> None:
    # The script exits at once, but its background child keeps the output pipe open: the
    # read runs into the timeout, and the child must not outlive it.
    pid_file = tmp_path / "child.pid"
    script = _script(tmp_path, f"sleep 60 &\necho $! > {pid_file}\n")
    try:
        with pytest.raises(SourceUnreadable, match="took longer"):
            run_command([script], 1)
        child = int(pid_file.read_text())
        for _ in range(50):
            if _gone(child):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the command's child outlived the timeout")
    finally:
        if pid_file.exists() and not _gone(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), 9)


def test_a_missing_program_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceUnreadable, match="could not start"):
        run_command([str(tmp_path / "nope")], 10)
