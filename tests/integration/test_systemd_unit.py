"""The shipped unit file: valid for systemd and hardened (exposure 2.0 or lower)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests import installed
from tests.servers.dovecot import Dovecot

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
        "ConfigurationDirectory=syncd",
        "LoadCredential=",
        "MemoryMax=",
        "TasksMax=",
        "LimitNOFILE=",
        "ExecStart=/opt/syncd/.venv/bin/syncd run",
        "CapabilityBoundingSet=\n",
    ):
        assert line in text, line


# --- the documented deployment, laid out as the README and systemd would ---------------------

README = UNIT.parents[1] / "README.md"
DYNAMIC_UID = 61184 + 4242  # inside systemd's DynamicUser range (61184-65519), in no group


def _service_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def _deployment_commands() -> list[str]:
    text = README.read_text()
    block = text[text.index("## Deployment") :].split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("  #")[0].strip() for line in block.splitlines()]


class Host:
    """A throw-away root directory standing in for /: /etc, /var/lib, /run."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, path: str) -> Path:
        return self.root / path.lstrip("/")


def _as_service(
    host: Host, settings: dict[str, list[str]], creds: Path, syncd: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run syncd as the dynamic user would run: its uid, no groups, the unit's environment,
    working directory and umask."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/", "CREDENTIALS_DIRECTORY": str(creds)}
    for assignment in settings.get("Environment", []):
        key, value = assignment.split("=", 1)
        env[key] = str(host(value)) if value.startswith("/") else value
    umask = settings.get("UMask", ["0022"])[-1]
    return subprocess.run(
        [
            *("setpriv", f"--reuid={DYNAMIC_UID}", f"--regid={DYNAMIC_UID}", "--clear-groups"),
            *(str(syncd), *args),
        ],
        umask=int(umask, 8),
        cwd=host(settings["WorkingDirectory"][-1]),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _systemd_start(host: Host, settings: dict[str, list[str]]) -> Path:
    """What systemd does before ExecStart: the unit's directories, modes and credentials."""
    for name in settings.get("ConfigurationDirectory", []):
        path = host(f"/etc/{name}")
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, 0, 0)  # ConfigurationDirectory= stays root's, only its mode is set
        path.chmod(int(settings.get("ConfigurationDirectoryMode", ["0755"])[-1], 8))
    for name in settings.get("StateDirectory", []):
        path = host(f"/var/lib/{name}")
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, DYNAMIC_UID, DYNAMIC_UID)
        path.chmod(int(settings.get("StateDirectoryMode", ["0755"])[-1], 8))
    creds = host("/run/credentials/syncd.service")
    creds.mkdir(parents=True)
    for entry in settings.get("LoadCredential", []):
        name, source = entry.split(":", 1)
        copy = creds / name
        shutil.copyfile(host(source), copy)  # read as root, like the service manager
        copy.chmod(0o400)
        os.chown(copy, DYNAMIC_UID, DYNAMIC_UID)
    creds.chmod(0o500)
    os.chown(creds, DYNAMIC_UID, DYNAMIC_UID)
    return creds


@pytest.mark.dovecot
def test_the_documented_deployment_starts_as_the_dynamic_user(dovecot: Dovecot) -> None:
    login, password = "user299", dovecot.users["user299"]
    # Not under pytest's tmp_path: that is private to root, and the service user must walk it.
    host = Host(Path(tempfile.mkdtemp(prefix="syncd-test-deploy-")))
    host.root.chmod(0o755)
    try:
        settings = _service_settings()
        config_path = settings["Environment"][0].split("=", 1)[1]
        assert config_path == "/etc/syncd/syncd.toml"
        assert settings["ExecStart"][-1].split()[0] == "/opt/syncd/.venv/bin/syncd"
        syncd: Path | None = None
        # The admin's steps, as the README gives them.
        for command in _deployment_commands():
            words = command.split()
            if words[:3] == ["python3", "-m", "venv"]:
                # Not the checkout's virtualenv: the service cannot enter a checkout that lies
                # in a private folder (a clone under /root, 0700).
                assert words[4:6] == ["&&", f"{words[3]}/bin/pip"], command
                syncd = installed.install(host(words[3]))
            elif words[:3] == ["install", "-d", "-m"]:
                for path in words[4:]:
                    host(path).mkdir(parents=True, exist_ok=True)
                    host(path).chmod(int(words[3], 8))
            elif words[:2] == ["install", "-m"] and words[3] == "/dev/stdin":
                host(words[4]).write_text(password + "\n")
                host(words[4]).chmod(int(words[2], 8))
            elif words[-1:] == ["init"]:
                assert syncd is not None and words[:3] == [
                    "/opt/syncd/.venv/bin/syncd", "--config", config_path
                ], command  # fmt: skip
                done = subprocess.run(
                    [str(syncd), "--config", str(host(words[2])), "init"],
                    capture_output=True, text=True, check=False,
                )  # fmt: skip
                assert done.returncode == 0, done.stdout + done.stderr
        # "then edit it": in place, as an editor keeps the file's mode.
        state = host(settings["WorkingDirectory"][-1])
        host(config_path).write_text(
            f'[database]\nurl = "sqlite:///{state}/syncd.db"\n\n'
            '[[mailbox]]\nname = "alice"\nowner = "alice@example.com"\nhost = "127.0.0.1"\n'
            f'port = {dovecot.port}\nsecurity = "plain"\nusername = "{login}"\n'
            'password_file = "alice"\nfolders = ["INBOX"]\n'
        )
        creds = _systemd_start(host, settings)
        assert syncd is not None, "the README installs syncd"

        checked = _as_service(host, settings, creds, syncd, "check")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "login: ok" in checked.stdout
        assert "warning" not in checked.stderr.lower(), checked.stderr
        upgraded = _as_service(host, settings, creds, syncd, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        status = _as_service(host, settings, creds, syncd, "status")
        assert status.returncode == 3, status.stdout + status.stderr  # 3: not running
        for result in (checked, upgraded, status):
            assert password not in result.stdout + result.stderr

        # Secrets: the originals are root's alone (not even the service reads them), the
        # service's copy is its own, and what the service writes is private.
        original = host("/etc/syncd/credentials/alice")
        assert original.stat().st_mode & 0o077 == 0
        peek = subprocess.run(
            ["setpriv", f"--reuid={DYNAMIC_UID}", f"--regid={DYNAMIC_UID}", "--clear-groups",
             "cat", str(original)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert peek.returncode != 0 and password not in peek.stdout
        assert (creds / "alice").stat().st_mode & 0o077 == 0
        assert password not in host(config_path).read_text()
        database_file = state / "syncd.db"
        assert database_file.stat().st_uid == DYNAMIC_UID
        assert database_file.stat().st_mode & 0o077 == 0
    finally:
        shutil.rmtree(host.root, ignore_errors=True)
