"""The [directory] source against a real database (SQLite): what a CRM export looks like
while it is written, and what a mirror must then leave alone."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from syncd.config import DirectoryConfig
from syncd.config_file import load_config
from syncd.engine.directory_sync import DirectorySource, apply_once
from syncd.store.database import open_database
from syncd.store.directory import list_customers

HEADER = "customer,domains,contact_name,contact_email\n"


def _rows(first: int, last: int) -> str:
    return "".join(f"Customer {i},c{i}.com,Person {i},p{i}@c{i}.com\n" for i in range(first, last))


def test_a_file_rewritten_in_place_is_not_mirrored_from_its_first_half(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'syncd.db'}")
    path = tmp_path / "customers.csv"
    path.write_text(HEADER + _rows(0, 20))
    source = DirectorySource(engine, DirectoryConfig(file=str(path), interval=1))
    assert source.check().result == "applied"

    # The CRM writes the same export again, in place: half of it, a pause, the rest.  The
    # half is a valid file (cut at a row boundary) listing only 10 of the 20 customers.
    path.write_text(HEADER + _rows(0, 10))

    def rest() -> None:
        with path.open("a") as handle:
            handle.write(_rows(10, 20))

    writer = threading.Timer(0.5, rest)
    writer.start()
    try:
        during = source.check()
    finally:
        writer.join()
    after = source.check()
    with engine.connect() as conn:
        archived = [c["name"] for c in list_customers(conn, archived=True)]
    engine.dispose()
    assert archived == [], f"archived while the file was written ({during}, {after})"
    assert during.result == "unchanged" and after.result == "unchanged"


def test_the_command_does_not_inherit_the_mailbox_passwords_syncd_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daemon's environment holds every rep's password when the config says
    # password_env: a CRM export script (often a vendor's) must not receive them.
    monkeypatch.setenv("SYNCD_TEST_ALICE_PW", "s3cr3t-imap")
    monkeypatch.setenv("SYNCD_TEST_CRM_TOKEN", "crm-token")  # the export's own: kept
    script = tmp_path / "export.sh"
    script.write_text(
        "#!/bin/sh\n"
        'echo "customer,domains,contact_name,contact_email"\n'
        'echo "pw ${SYNCD_TEST_ALICE_PW:-none} token ${SYNCD_TEST_CRM_TOKEN:-none},,,"\n'
    )
    script.chmod(0o755)
    path = tmp_path / "syncd.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n\n'
        '[[mailbox]]\nname = "alice"\nowner = "alice@example.com"\nhost = "127.0.0.1"\n'
        'username = "alice"\npassword_env = "SYNCD_TEST_ALICE_PW"\n\n'
        f'[directory]\ncommand = ["{script}"]\n'
    )
    config = load_config(path)
    engine = open_database(config.database.url)
    outcome = apply_once(engine, config)
    with engine.connect() as conn:
        names = [c["name"] for c in list_customers(conn)]
    engine.dispose()
    assert outcome is not None and outcome.result == "applied", outcome
    assert names == ["pw none token crm-token"]


@pytest.mark.parametrize(
    "content",
    [
        "cs-Client-Secret-Value-1234\n",  # a one-line secret file: its "header" is the secret
        "customer,domains,contact_name,contact_email\ncs-Client-Secret-Value-1234,x,,\n",
        "customer,domains,contact_name,contact_email\nAcme,cs-Client-Secret-Value-1234,,\n",
        "customer,domains,contact_name,contact_email\nAcme,,,cs-Client-Secret-Value-1234\n",
    ],
)
def test_a_file_that_is_no_directory_is_never_quoted(tmp_path: Path, content: str) -> None:
    # [directory] file pointed by mistake at a secret file (or a file whose cells are
    # secrets): refused, and neither the log, source_states nor `syncd status` quote it.
    from click.testing import CliRunner
    from sqlalchemy import select
    from structlog.testing import capture_logs

    from syncd.cli.main import cli
    from syncd.schema.tables import source_states

    secret = tmp_path / "client.secret"
    secret.write_text(content)
    config = tmp_path / "syncd.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n'
        f'[organization]\ninternal_domains = ["example.com"]\n[directory]\nfile = "{secret}"\n'
    )
    engine = open_database(f"sqlite:///{tmp_path / 'syncd.db'}")
    source = DirectorySource(engine, load_config(config).directory)  # type: ignore[arg-type]
    with capture_logs() as logs:
        outcome = source.check()
    with engine.connect() as conn:
        stored = [str(row) for row in conn.execute(select(source_states))]
    engine.dispose()
    status = CliRunner().invoke(cli, ["--config", str(config), "status", "--json"])
    shown = [outcome.error or "", *map(str, logs), *stored, status.output]
    assert outcome.result == "error" and stored and "directory" in status.output
    for text in shown:
        assert "client-secret" not in text.lower(), text
