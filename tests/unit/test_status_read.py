"""SQLAlchemy URLs as the DB-API drivers take them (store/status_read.py)."""

from __future__ import annotations

from syncd.store.status_read import DriverTarget, driver_target


def test_a_sqlite_file_is_its_path() -> None:
    assert driver_target("sqlite:////var/lib/syncd/syncd.db") == DriverTarget(
        "sqlite", "/var/lib/syncd/syncd.db"
    )
    assert driver_target("sqlite+pysqlite:////srv/s.db") == DriverTarget("sqlite", "/srv/s.db")
    # Relative to the working directory, as SQLAlchemy reads it (the config has already
    # made a path relative to the config file absolute).
    assert driver_target("sqlite:///syncd.db") == DriverTarget("sqlite", "syncd.db")


def test_psycopg_urls_are_libpq_uris() -> None:
    assert driver_target("postgresql+psycopg://syncd:p%40ss@127.0.0.1:5432/crm") == DriverTarget(
        "postgresql", "postgresql://syncd:p%40ss@127.0.0.1:5432/crm"
    )
    assert driver_target(
        "postgresql+psycopg://syncd@/crm?host=/run/postgresql&connect_timeout=2"
    ) == DriverTarget(
        "postgresql", "postgresql://syncd@/crm?host=/run/postgresql&connect_timeout=2"
    )


def test_what_the_drivers_do_not_take_as_is_is_left_to_sqlalchemy() -> None:
    for url in (
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///syncd.db?timeout=5",
        "sqlite:///my%20file.db",
        "postgresql://syncd@127.0.0.1/crm",  # SQLAlchemy's default driver, not psycopg 3
        "postgresql+psycopg2://syncd@127.0.0.1/crm",
        "mysql+pymysql://syncd@127.0.0.1/crm",
    ):
        assert driver_target(url) is None, url
