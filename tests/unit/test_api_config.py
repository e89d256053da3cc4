"""[api]: loopback by default, TLS (or an explicit allow_plaintext) off loopback."""

from __future__ import annotations

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


def test_workers_default_one_and_capped() -> None:
    api = parse_config(_api()).api
    assert api is not None and api.workers == 1  # unchanged unless an admin opts in
    three = parse_config(_api(workers=3)).api
    assert three is not None and three.workers == 3
    assert parse_config(_api(workers=16)).api is not None
    for wrong in (0, 17):
        with pytest.raises(ConfigError, match="workers"):
            parse_config(_api(workers=wrong))


def test_each_process_takes_its_share_of_the_database_pool(tmp_path: Path) -> None:
    from syncd.api.server import MIN_POOL, POOL_SIZE, ApiServer

    config = parse_config(
        {"database": {"url": f"sqlite:///{tmp_path}/s.db"}, "api": {"listen": "127.0.0.1:0"}}
    )
    for processes, pool in [(1, POOL_SIZE), (2, POOL_SIZE // 2), (16, MIN_POOL)]:
        server = ApiServer(config, processes=processes)  # bound, not started
        try:
            assert server._engine.pool.size() == pool  # type: ignore[attr-defined]
        finally:
            server._socket.close()
            server._reads.stop(1.0)
            server._engine.dispose()
