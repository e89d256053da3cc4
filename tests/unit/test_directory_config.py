"""[directory]: one source, paths relative to the config file."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.config_file import load_config
from syncd.errors import ConfigError


def _load(tmp_path: Path, section: str) -> object:
    path = tmp_path / "syncd.toml"
    path.write_text(f"[directory]\n{section}\n")
    return load_config(path).directory


def test_a_relative_file_and_command_are_relative_to_the_config(tmp_path: Path) -> None:
    directory = _load(tmp_path, 'file = "crm/customers.csv"')
    assert directory.file == str(tmp_path.resolve() / "crm/customers.csv")  # type: ignore[attr-defined]
    directory = _load(tmp_path, 'command = ["./export.sh", "--csv"]\ninterval = 5')
    assert directory.command == [str(tmp_path.resolve() / "export.sh"), "--csv"]  # type: ignore[attr-defined]
    assert directory.interval == 5  # type: ignore[attr-defined]
    directory = _load(tmp_path, 'command = ["crm-export"]')
    assert directory.command == ["crm-export"]  # type: ignore[attr-defined]  # found on PATH


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ("interval = 5", "set exactly one of file and command"),
        ('file = "a.csv"\ncommand = ["x"]', "set exactly one of file and command"),
        ("command = []", "directory.command"),
        ('file = "a.csv"\nintervall = 5', "directory.intervall: unknown key"),
    ],
)
def test_a_wrong_directory_section_is_refused(tmp_path: Path, section: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, section)
    assert problem in caught.value.message
