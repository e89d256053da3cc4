"""A PostgreSQL for the tests: the machine's server if it answers, else a private cluster.

Order: ``$SYNCD_TEST_POSTGRES`` (a SQLAlchemy URL of a server where we may create
databases); the local server on 127.0.0.1:5432 as ``postgres`` with trust auth;
otherwise a throw-away cluster made with ``initdb`` on a free loopback port.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.servers.ports import free_port, wait_listening

LOCAL_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _answers(url: str) -> bool:
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


def _pg_bin(name: str) -> str:
    found = sorted(str(p) for p in Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"{name} not found: run scripts/bootstrap.sh (apt-get install postgresql)"
        )
    return path


@contextmanager
def private_cluster(root: Path, settings: dict[str, str] | None = None) -> Iterator[str]:
    """initdb + pg_ctl on a free port, trust auth on loopback only; yields an admin URL.

    ``settings``: server parameters for this cluster alone (``max_connections``, say), so a
    benchmark never has to change the machine's server."""
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    port = free_port()
    as_user: list[str] = []
    user = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:  # initdb refuses to run as root
        user = "postgres"
        shutil.chown(root, user)
        as_user = ["runuser", "-u", user, "--"]
    subprocess.run(
        [*as_user, _pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", user, "--no-sync"],
        check=True,
        capture_output=True,
    )
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} -c fsync=off"
    options += "".join(f" -c {name}={value}" for name, value in (settings or {}).items())
    subprocess.run(
        [
            *as_user,
            _pg_bin("pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(root / "pg.log"),
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        wait_listening(port)
        yield f"postgresql+psycopg://{user}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, _pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            check=False,
            capture_output=True,
        )


@contextmanager
def admin_url(scratch: Path) -> Iterator[str]:
    configured = os.environ.get("SYNCD_TEST_POSTGRES")
    if configured:
        yield configured
    elif _answers(LOCAL_URL):
        yield LOCAL_URL
    else:
        # Not under the caller's scratch folder: that may be private to root, and the cluster
        # runs as the postgres user.
        root = Path(tempfile.mkdtemp(prefix="syncd-test-pg-"))
        root.chmod(0o755)
        try:
            with private_cluster(root / "pg") as url:
                yield url
        finally:
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def scratch_database(admin: str) -> Iterator[str]:
    """A new empty database on the admin server, dropped afterwards; yields its URL."""
    name = f"syncd_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
