"""The daemon's cached directory: a load that raced a change is not kept.

A sync that read the customers just before the [directory] source applied a change would
otherwise cache what it read after the change dropped the cache, and every sync for the
next 30 s would match mail against the old directory (an archived customer restored in the
CRM still unlinked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import syncd.engine.directory_cache as daemon_module
from syncd.engine.daemon import Daemon
from syncd.store.database import open_database


def test_a_load_that_raced_a_change_serves_its_sync_but_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "syncd.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n')
    daemon = Daemon(config)
    daemon._engine = open_database(f"sqlite:///{tmp_path / 'syncd.db'}")
    loads: list[str] = []
    real = daemon_module.load_directory

    def load_then_change(conn: Any, capture: Any) -> Any:
        directory = real(conn, capture)
        loads.append("old" if not loads else "new")
        if len(loads) == 1:
            daemon._directory.drop()  # the mirror commits while this load is in hand
        return directory

    monkeypatch.setattr(daemon_module, "load_directory", load_then_change)
    try:
        daemon._directory.current(
            daemon._engine, daemon._config.capture
        )  # the racing load: used once, not cached
        assert daemon._directory.cached is None
        daemon._directory.current(
            daemon._engine, daemon._config.capture
        )  # the next sync reads anew, and that one is kept
        assert loads == ["old", "new"] and daemon._directory.cached is not None
        daemon._directory.current(daemon._engine, daemon._config.capture)
        assert loads == ["old", "new"]  # served from the cache now
    finally:
        daemon._engine.dispose()
