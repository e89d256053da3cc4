"""Secrets others can read are reported, by file name and mode, never by value."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.config_file import load_config
from syncd.engine import daemon as daemon_module
from syncd.engine.daemon import Daemon
from syncd.secrets import exposed_secrets
from tests.recorder import Recorder

SECRET = "pw-hunter2-s3cr3t"


def _config(tmp_path: Path, mailbox_secret: str) -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/syncd.db"\n\n'
        '[[mailbox]]\nname = "alice"\nowner = "alice@example.com"\nhost = "127.0.0.1"\n'
        f'security = "plain"\nusername = "alice"\n{mailbox_secret}\n'
    )
    return path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_an_inline_password_in_a_readable_config_is_reported(tmp_path: Path, mode: int) -> None:
    path = _config(tmp_path, f'password = "{SECRET}"')
    path.chmod(mode)
    (problem,) = exposed_secrets(load_config(path), path)
    assert str(path) in problem and f"{mode:04o}" in problem and "mailbox alice" in problem
    assert SECRET not in problem


def test_a_readable_password_file_is_reported(tmp_path: Path) -> None:
    secret_file = tmp_path / "alice.pass"
    secret_file.write_text(SECRET)
    path = _config(tmp_path, f'password_file = "{secret_file}"')
    path.chmod(0o644)  # no secret in it: fine
    secret_file.chmod(0o640)
    (problem,) = exposed_secrets(load_config(path), path)
    assert str(secret_file) in problem and "0640" in problem and SECRET not in problem
    secret_file.chmod(0o600)
    assert exposed_secrets(load_config(path), path) == []


def test_private_files_and_credentials_are_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "alice").write_text(SECRET)
    (creds / "alice").chmod(0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    path = _config(tmp_path, 'password_file = "alice"')
    assert exposed_secrets(load_config(path), path) == []
    inline = _config(tmp_path, f'password = "{SECRET}"')
    inline.chmod(0o600)
    assert exposed_secrets(load_config(inline), inline) == []


def test_the_daemon_warns_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _config(tmp_path, f'password = "{SECRET}"')
    path.chmod(0o644)
    recorder = Recorder()
    monkeypatch.setattr(daemon_module, "log", recorder)
    Daemon(path)
    warned = [e for e in recorder.events if e[1] == "secrets.exposed"]
    assert len(warned) == 1 and warned[0][0] == "warning"
    assert SECRET not in repr(recorder.events)
