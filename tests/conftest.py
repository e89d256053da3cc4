"""Fixtures: a real Dovecot, SQLite and PostgreSQL databases, and a test's world of reps."""

from __future__ import annotations

import functools
import gc
import itertools
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import settings
from sqlalchemy import Engine

from syncd.cli.main import cli
from tests.progress import LongTestNotices
from tests.servers.bottlecrm import BottleCrm, prepare
from tests.servers.dovecot import Dovecot
from tests.servers.postgres import admin_url, scratch_database
from tests.servers.radicale import Radicale

# Where time is the point, tests bound CPU time themselves; Hypothesis's per-example deadline
# (wall time) would turn a garbage-collection pause on a loaded machine into a failure.
settings.register_profile("syncd", deadline=None)
settings.load_profile("syncd")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """pytest's own tmp_path folders go in a folder of this run, removed when it ends:
    by default pytest keeps the last three runs' under /tmp/pytest-of-USER for good.
    xdist's workers are given a folder inside it (their basetemp is set already)."""
    if config.option.basetemp or hasattr(config, "workerinput"):
        return
    base = tempfile.mkdtemp(prefix="syncd-pytest-")
    config.option.basetemp = base
    config.add_cleanup(functools.partial(shutil.rmtree, base, ignore_errors=True))


# The test files that run 18 s or more (seconds on 2 cores, most of it waiting on daemons and
# servers), longest first.  scripts/test.sh hands xdist whole files (--dist loadfile) in collection
# order (--no-loadscope-reorder): started first, they end before the many short files do,
# instead of one of them starting last and running alone at the end.  A file missing here
# only runs in its usual place; refresh the list from a run's --durations or junit times.
LONGEST_FIRST = (
    "tests/integration/test_fleet.py",  # 92
    "tests/integration/test_webhooks.py",  # 91
    "tests/integration/test_daemon.py",  # 71
    "tests/unit/test_calendar_limits.py",  # 68
    "tests/integration/test_api.py",  # 57
    "tests/integration/test_hostile_calendars.py",  # 54
    "tests/integration/test_crm_bottlecrm.py",  # 50
    "tests/integration/test_webhooks_daemon.py",  # 45
    "tests/integration/test_first_look.py",  # 45
    "tests/integration/test_webhooks_e2e.py",  # 42
    "tests/integration/test_leases.py",  # 39
    "tests/integration/test_fleet_stop.py",  # 35
    "tests/integration/test_capture.py",  # 34
    "tests/integration/test_push_hub.py",  # 33
    "tests/integration/test_kept_sessions.py",  # 32
    "tests/integration/test_verify.py",  # 30
    "tests/integration/test_sync_imports.py",  # 30
    "tests/integration/test_directory_mirror.py",  # 30
    "tests/integration/test_oauth2_tokens.py",  # 30
    "tests/integration/test_api_lean.py",  # 30
    "tests/integration/test_quiet_polls.py",  # 30
    "tests/integration/test_meetings.py",  # 29
    "tests/integration/test_mailbox_groups.py",  # 29
    "tests/integration/test_notify.py",  # 28
    "tests/integration/test_metrics_listener.py",  # 25
    "tests/integration/test_migration_0011.py",  # 25
    "tests/integration/test_privacy.py",  # 23
    "tests/contract/test_engine_edges.py",  # 22
    "tests/integration/test_logged_records.py",  # 19
    "tests/integration/test_reconcile.py",  # 19
    "tests/integration/test_directory_daemon.py",  # 19
    "tests/integration/test_insight.py",  # 19
    "tests/unit/test_first_look_scale.py",  # 19
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files of LONGEST_FIRST first, in its order; the others after, as collected.
    The same order in every xdist worker (xdist checks that their collections agree)."""
    rank = {path: n for n, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.hookimpl(trylast=True)  # after the terminal reporter and xdist are set up
def pytest_configure(config: pytest.Config) -> None:
    """Long tests are named while they run, by the process that prints: xdist's controller,
    which hears when each test starts and ends, or pytest alone (workers' output is lost)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or hasattr(config, "workerinput"):
        return
    write: Callable[[str], object]
    if config.pluginmanager.has_plugin("dsession"):  # xdist's controller: tests run elsewhere
        write = functools.partial(_report_line, reporter)
    else:
        # Tests run here, with their output captured: write past the capture, to the file
        # pytest prints on (not captured while pytest configures).
        try:
            out = os.dup(sys.stdout.fileno())
        except (AttributeError, OSError, ValueError):
            return
        config.add_cleanup(lambda: os.close(out))
        write = functools.partial(_write_line, out)
    notices = LongTestNotices(write)
    config.pluginmanager.register(notices, "syncd-long-test-notices")
    notices.start()


def _report_line(reporter: pytest.TerminalReporter, line: str) -> None:
    reporter.write_line(f"\n{line}", yellow=True)  # off the line of dots


def _write_line(fd: int, line: str) -> None:
    os.write(fd, f"\n{line}\n".encode())


@pytest.fixture(scope="session", autouse=True)
def leaves_nothing_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Tests clean up after themselves.  Every temporary folder this process (an xdist worker,
    or pytest alone) and the servers and daemons it starts make lands in a folder of its own
    under /tmp, which must be empty when the session ends.  A folder of its own, not a
    comparison of /tmp listings: other test runs on the machine create and remove their
    "syncd-" folders there at the same time."""
    tmp_path_factory.getbasetemp()  # pytest's tmp_path stays where pytest keeps it
    saved = tempfile.tempdir, os.environ.get("TMPDIR")
    # A short path: Dovecot's and the notify sockets below it must fit in 108 bytes.
    run = Path(tempfile.mkdtemp(prefix="syncd-run-", dir=tempfile.gettempdir()))
    run.chmod(0o1777)  # like /tmp: Dovecot's users, postgres and the dynamic user walk it
    tempfile.tempdir = os.environ["TMPDIR"] = str(run)
    try:
        yield run
    finally:
        tempfile.tempdir = saved[0]
        if saved[1] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved[1]
    gc.collect()  # helpers that remove their folder when dropped (tests/daemon.py)
    left = sorted(path.name for path in run.iterdir())
    if os.environ.get("SYNCD_KEEP_TEST_SERVERS"):
        print(f"\nkept the test servers' folders in {run}")
        return
    shutil.rmtree(run, ignore_errors=True)
    assert not left, f"tests left these in the temporary folder (clean up after a test): {left}"


_USER_IDS = itertools.count(0)
_CAL_IDS = itertools.count(0)
LOGINS = 300
INTERNAL = ["example.com"]


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    # Not under pytest's tmp_path: that is private to root, and Dovecot's own users must read it.
    root = Path(tempfile.mkdtemp(prefix="syncd-test-dovecot-"))
    # Logins are made up front: Dovecot reads its passwd-file at most once a second.
    users = {f"user{n}": f"pw-user{n}-s3cr3t" for n in range(LOGINS)}
    server = Dovecot(root, users, tls=True).start()
    yield server
    server.stop()
    if not os.environ.get("SYNCD_KEEP_TEST_SERVERS"):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def radicale() -> Iterator[Radicale]:
    root = Path(tempfile.mkdtemp(prefix="syncd-test-radicale-"))
    server = Radicale(root, {f"cal{n}": f"pw-cal{n}-s3cr3t" for n in range(LOGINS)}).start()
    yield server
    server.stop()
    if not os.environ.get("SYNCD_KEEP_TEST_SERVERS"):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def bottlecrm() -> Iterator[BottleCrm]:
    """One real BottleCRM per test session, copied from the prepared template (see
    scripts/prepare-bottlecrm.sh): a few seconds, not minutes of migrations."""
    prepare()
    server = BottleCrm().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with admin_url(tmp_path_factory.mktemp("postgres")) as url:
        yield url


@pytest.fixture
def db_engine(db_url: str) -> Iterator[Engine]:
    """An engine on ``db_url`` (each engine in turn), migrated."""
    from syncd.store.database import open_database

    engine = open_database(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_engine(pg_admin: str) -> Iterator[Engine]:
    """An engine on a scratch PostgreSQL database, migrated."""
    from syncd.store.database import open_database

    with scratch_database(pg_admin) as url:
        engine = open_database(url)
        yield engine
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'syncd.db'}"
    else:
        with scratch_database(request.getfixturevalue("pg_admin")) as url:
            yield url


class World:
    """Reps with real mailboxes on the shared Dovecot, a config file and a database."""

    def __init__(self, dovecot: Dovecot, tmp_path: Path, db_url: str) -> None:
        self.dovecot = dovecot
        self.tmp = tmp_path
        self.db_url = db_url
        self.logins: dict[str, str] = {}
        self.cal_logins: dict[str, str] = {}
        self.radicale: Radicale | None = None
        self.passwords: dict[str, str] = {}
        self.config_path = tmp_path / "syncd.toml"
        self.runner = CliRunner()

    def rep(self, name: str) -> str:
        """Create rep ``name`` (owner name@example.com) with a fresh Dovecot login."""
        login = f"user{next(_USER_IDS)}"
        password = self.dovecot.users[login]
        self.logins[name] = login
        self.passwords[name] = password
        (self.tmp / f"{name}.pass").write_text(password + "\n")
        return login

    def cal_rep(self, name: str, radicale: Radicale, *, display_name: str = "Work") -> str:
        """Give rep ``name`` a Radicale account with one calendar; returns the calendar's folder name."""
        login = f"cal{next(_CAL_IDS)}"
        self.radicale = radicale
        self.cal_logins[name] = login
        radicale.make_calendar(login, "work", display_name)
        (self.tmp / f"{name}.calpass").write_text(radicale.users[login] + "\n")
        return login

    def put_event(self, rep: str, name: str, text: str) -> None:
        assert self.radicale is not None
        self.radicale.put(self.cal_logins[rep], "work", name, text)

    def seed_events(self, rep: str, objects: dict[str, str]) -> None:
        assert self.radicale is not None
        self.radicale.seed(self.cal_logins[rep], "work", objects)

    def deliver(self, rep: str, raw: bytes, folder: str = "INBOX", *, seen: bool = False) -> None:
        self.dovecot.deliver(self.logins[rep], raw, folder=folder, seen=seen)

    def write_config(
        self,
        *,
        capture: str = "",
        mailbox: dict[str, dict[str, object]] | None = None,
        extra: str = "",
    ) -> Path:
        """Write syncd.toml; ``mailbox`` overrides keys per rep (None removes a key)."""
        boxes = []
        for name, login in self.logins.items():
            keys: dict[str, object] = {
                "name": name,
                "owner": f"{name}@example.com",
                "host": "127.0.0.1",
                "port": self.dovecot.port,
                "security": "plain",
                "username": login,
                "password_file": str(self.tmp / f"{name}.pass"),
            }
            keys.update((mailbox or {}).get(name, {}))
            boxes.append(
                "[[mailbox]]\n"
                + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items() if v is not None)
            )
        for name, login in self.cal_logins.items():
            assert self.radicale is not None
            keys = {
                "name": f"{name}-cal",
                "owner": f"{name}@example.com",
                "url": self.radicale.url,
                "username": login,
                "password_file": str(self.tmp / f"{name}.calpass"),
            }
            keys.update((mailbox or {}).get(f"{name}-cal", {}))
            boxes.append(
                "[[calendar]]\n"
                + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items() if v is not None)
            )
        self.config_path.write_text(
            f'[database]\nurl = "{self.db_url}"\n\n[organization]\ninternal_domains = {json.dumps(INTERNAL)}\n'
            f'timezone = "Europe/Berlin"\n\n'
            + (f"[capture]\n{capture}\n\n" if capture else "")
            + (f"{extra}\n\n" if extra else "")
            + "\n".join(boxes)
        )
        return self.config_path

    def cli(self, *args: str, expect: int | None = 0) -> Result:
        if not self.config_path.exists():
            self.write_config()
        result = self.runner.invoke(
            cli, ["--config", str(self.config_path), *args], catch_exceptions=False
        )
        if expect is not None:
            assert result.exit_code == expect, f"exit {result.exit_code}: {result.output}"
        return result

    def records(self, *args: str) -> list[dict[str, Any]]:
        return json.loads(self.cli("records", "list", "--json", *args).stdout)  # type: ignore[no-any-return]

    def customers(self, csv_text: str) -> None:
        path = self.tmp / "customers.csv"
        path.write_text(csv_text)
        self.cli("customers", "import", str(path))


@pytest.fixture
def world(dovecot: Dovecot, tmp_path: Path, db_url: str) -> World:
    return World(dovecot, tmp_path, db_url)
