"""[api]: loopback by default, TLS (or an explicit allow_plaintext) off loopback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syncd.config_file import parse_config
from syncd.errors import ConfigError


def _api(**keys: object) -> dict[str, object]:
    return {"api": keys}


def test_defaults_to_loopback_and_is_off_without_the_section() -> None:
    assert parse_config({}).api is None
    api = parse_config(_api()).api
    assert api is not None and api.listen == "127.0.0.1:8780" and api.rate_limit == 50


@pytest.mark.parametrize("listen", ["0.0.0.0:8780", "192.0.2.7:443", "[::]:8780"])
def test_off_loopback_needs_tls_or_allow_plaintext(listen: str) -> None:
    with pytest.raises(ConfigError, match="tls_cert and tls_key, or allow_plaintext"):
        parse_config(_api(listen=listen))
    assert parse_config(_api(listen=listen, allow_plaintext=True)).api is not None
    api = parse_config(_api(listen=listen, tls_cert="c.pem", tls_key="k.pem")).api
    assert api is not None and api.tls_cert == "c.pem"


def test_tls_files_come_in_pairs_and_are_relative_to_the_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="both tls_cert and tls_key"):
        parse_config(_api(tls_cert="c.pem"))
    api = parse_config(_api(tls_cert="c.pem", tls_key="k.pem"), base=tmp_path).api
    assert api is not None and api.tls_cert == str(tmp_path / "c.pem")
    assert api.tls_key == str(tmp_path / "k.pem")


@pytest.mark.parametrize("listen", ["8780", "localhost", "127.0.0.1:99999", ":80"])
def test_listen_is_host_port(listen: str) -> None:
    with pytest.raises(ConfigError, match=r"api\.listen"):
        parse_config(_api(listen=listen))


def test_rate_limit_and_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="rate_limit"):
        parse_config(_api(rate_limit=0))
    with pytest.raises(ConfigError, match="porte"):
        parse_config(_api(porte=1))


def test_workers_default_by_command_and_range() -> None:
    from syncd.api.processes import default_workers

    api = parse_config(_api()).api
    assert api is not None and api.workers == 0
    assert default_workers(api, alone=False) == 1  # `syncd run`: a thread of the daemon
    assert default_workers(api, alone=True) == min(4, max(1, os.cpu_count() or 1))  # serve
    three = parse_config(_api(workers=3)).api
    assert three is not None
    assert default_workers(three, alone=False) == default_workers(three, alone=True) == 3
    with pytest.raises(ConfigError, match="workers"):
        parse_config(_api(workers=65))
