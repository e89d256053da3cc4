"""The configuration file: where it is, reading it, validating it all at once.

Every problem is reported with its key path (``mailbox[1].port``) in one error, so an admin
fixes the file in one go.  Relative paths in it are relative to the file; the members of a
[[mailbox_group]] are expanded here (syncd/groups.py), so that everything after sees
plain mailboxes.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from syncd.config import Config, DatabaseConfig, DirectoryConfig
from syncd.config_check import Invalid
from syncd.errors import ConfigError

DEFAULT_PATH = "syncd.toml"
ENV_VAR = "SYNCD_CONFIG"


def resolve_path(path: str | os.PathLike[str] | None) -> Path:
    return Path(path or os.environ.get(ENV_VAR) or DEFAULT_PATH)


def _anchor_sqlite(url: str, base: Path) -> str:
    """A relative SQLite path is relative to the config file, not to wherever syncd was started."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        return prefix + str((base / url[len(prefix) :]).resolve())
    return url


def _anchor_directory(directory: DirectoryConfig, base: Path) -> DirectoryConfig:
    """[directory] file, and a command given by a relative path, are relative to the config."""
    if directory.file is not None:
        return replace(directory, file=str(base / Path(directory.file).expanduser()))
    assert directory.command is not None
    program = directory.command[0]
    if "/" in program and not Path(program).is_absolute():
        return replace(directory, command=[str(base / program), *directory.command[1:]])
    return directory


def parse_config(data: dict[str, Any], *, base: Path | None = None, source: str = "") -> Config:
    try:
        config = Config.from_dict(data)
    except Invalid as err:
        raise ConfigError(err.lines(), path=source or None) from None
    if base is not None:
        url = _anchor_sqlite(config.database.url, base)
        config = replace(config, database=DatabaseConfig(url=url))
        if config.directory is not None:
            config = replace(config, directory=_anchor_directory(config.directory, base))
        if config.api is not None and config.api.tls_cert is not None:
            assert config.api.tls_key is not None  # both or neither (ApiConfig)
            api = replace(
                config.api,
                tls_cert=str(base / Path(config.api.tls_cert).expanduser()),
                tls_key=str(base / Path(config.api.tls_key).expanduser()),
            )
            config = replace(config, api=api)
    if config.mailbox_group:
        # Only then: the groups bring the secret sources (subprocess, shlex) and csv.
        from syncd.groups import expand_groups

        config = expand_groups(config, base=base, source=source)
    return config


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    file = resolve_path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"{file}: no such file"], path=str(file)) from None
    except OSError as err:
        raise ConfigError([f"{file}: cannot read ({err.strerror})"], path=str(file)) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError([f"not valid TOML: {err}"], path=str(file)) from None
    except RecursionError:  # tomllib recurses per level: [[[[...]]]] 1,000 deep
        raise ConfigError(
            ["not valid TOML: arrays or tables nested too deeply"], path=str(file)
        ) from None
    return parse_config(data, base=file.resolve().parent, source=str(file))
