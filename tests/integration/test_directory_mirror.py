"""The directory in step with the CRM: `customers import --mirror` and `[directory]` in
`syncd sync`, against real Dovecot on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import World
from tests.mail import make_message
from tests.servers.postgres import scratch_database

pytestmark = pytest.mark.dovecot

BOTH = """\
customer,domains,contact_name,contact_email
Acme Corp,acme.com,Wile Coyote,wile@acme.com
Globex,globex.io,Hank Scorpio,hank@globex.io
"""
ACME_ONLY = """\
customer,domains,contact_name,contact_email
Acme Corp,acme.com,Wile Coyote,wile@acme.com
"""


def _import(world: World, text: str, *args: str, expect: int = 0) -> Any:
    path = world.tmp / "crm.csv"
    path.write_text(text)
    return world.cli("customers", "import", str(path), "--mirror", *args, expect=expect)


def _counts(world: World, text: str) -> dict[str, dict[str, int]]:
    out = json.loads(_import(world, text, "--json").stdout)
    assert out["mirror"] is True
    return {"customers": out["customers"], "contacts": out["contacts"]}


def _record(world: World, message_id: str) -> dict[str, Any]:
    (found,) = [r for r in world.records() if r["message_id"] == message_id]
    return found


def _names(world: World, *args: str) -> list[str]:
    return [c["name"] for c in json.loads(world.cli("customers", "list", "--json", *args).stdout)]


def test_mirror_archives_keeps_history_links_nothing_new_and_restores(world: World) -> None:
    world.rep("alice")
    assert _counts(world, BOTH)["customers"]["added"] == 2
    world.deliver(
        "alice", make_message(sender="Hank <hank@globex.io>", message_id="<g1@globex.io>")
    )
    world.cli("sync")
    assert _record(world, "g1@globex.io")["customers"][0]["name"] == "Globex"

    counts = _counts(world, ACME_ONLY)
    assert counts == {
        "customers": {"added": 0, "updated": 0, "archived": 1, "restored": 0, "unchanged": 1},
        "contacts": {"added": 0, "updated": 0, "archived": 1, "restored": 0, "unchanged": 1},
    }
    assert _names(world) == ["Acme Corp"]
    assert _names(world, "--archived") == ["Globex"]
    assert _names(world, "--all") == ["Acme Corp", "Globex"]

    # New mail from the archived customer's contact and domain links to nothing and is
    # queued; the display name and the thread with Globex would suggest it, were it active.
    world.deliver(
        "alice",
        make_message(
            sender="Hank Scorpio Globex <hank@globex.io>",
            message_id="<g2@globex.io>",
            in_reply_to="<g1@globex.io>",
            references="<g1@globex.io>",
        ),
    )
    world.deliver("alice", make_message(sender="new@globex.io", message_id="<g3@globex.io>"))
    world.cli("sync")
    assert _record(world, "g2@globex.io")["customers"] == []
    assert _record(world, "g3@globex.io")["customers"] == []
    assert _record(world, "g1@globex.io")["customers"][0]["name"] == "Globex"  # history kept
    assert [r["message_id"] for r in world.records("--customer", "Globex")] == ["g1@globex.io"]
    assert "Quote for 40 seats" in world.cli("timeline", "Globex").stdout
    queue = {e["address"]: e for e in json.loads(world.cli("reconcile", "list", "--json").stdout)}
    assert {"hank@globex.io", "new@globex.io"} <= set(queue)
    for entry in queue.values():
        suggested = [entry["suggestion"], *entry.get("suggestions", [])]
        assert all(s is None or s["customer"] != "Globex" for s in suggested), entry
    why = json.loads(
        world.cli("records", "explain", str(_record(world, "g2@globex.io")["id"]), "--json").stdout
    )
    hank = next(p for p in why["participants"] if p["address"] == "hank@globex.io")
    assert hank["reason"] == "archived" and "no longer lists" in hank["explanation"]
    refused = world.cli("reconcile", "assign", "new@globex.io", "--customer", "Globex", expect=2)
    assert "archived" in refused.stderr and "Traceback" not in refused.output

    assert _counts(world, BOTH)["customers"]["restored"] == 1
    assert _names(world) == ["Acme Corp", "Globex"]
    world.deliver("alice", make_message(sender="hank@globex.io", message_id="<g4@globex.io>"))
    world.deliver("alice", make_message(sender="other@globex.io", message_id="<g5@globex.io>"))
    world.cli("sync")
    assert _record(world, "g4@globex.io")["customers"][0]["link"] == "contact"
    assert _record(world, "g5@globex.io")["customers"][0]["link"] == "domain"
    queue = {e["address"] for e in json.loads(world.cli("reconcile", "list", "--json").stdout)}
    assert "hank@globex.io" not in queue  # a contact again

    audit = [(e["action"], e["target"]) for e in json.loads(world.cli("audit", "--json").stdout)]
    assert ("archive", "customer Globex") in audit and (
        "archive",
        "contact hank@globex.io",
    ) in audit
    assert ("restore", "customer Globex") in audit and (
        "restore",
        "contact hank@globex.io",
    ) in audit
    # The same file again changes nothing; the summary for people names every count.
    again = _import(world, BOTH).stdout
    assert "customers: 0 added, 0 updated, 0 archived, 0 restored, 2 unchanged" in again


def test_a_file_with_bad_rows_changes_nothing_and_lists_every_bad_row(world: World) -> None:
    _import(world, BOTH)
    out = _import(
        world,
        ACME_ONLY + "Initech,co.uk,,\nUmbrella,umbrella.com,Al,not-an-address\n,x.com,,\n",
        expect=2,
    )
    assert "nothing imported, 3 bad row(s)" in out.stderr
    assert all(f"line {n}:" in out.stderr for n in (3, 4, 5))
    assert "Traceback" not in out.output
    assert _names(world) == ["Acme Corp", "Globex"]  # Globex was not archived


def test_a_dry_run_says_what_would_change_and_changes_nothing(world: World) -> None:
    _import(world, BOTH)
    out = json.loads(_import(world, ACME_ONLY, "--dry-run", "--json").stdout)
    assert out["dry_run"] is True and out["archived_customers"] == ["Globex"]
    assert out["contacts"]["archived"] == 1
    assert _names(world) == ["Acme Corp", "Globex"]
    text = _import(world, ACME_ONLY, "--dry-run").stdout
    assert "archived: Globex" in text and "dry run: nothing was changed" in text
    assert _names(world) == ["Acme Corp", "Globex"]


def test_an_empty_file_archives_nobody_without_allow_empty(world: World) -> None:
    _import(world, BOTH)
    header = "customer,domains,contact_name,contact_email\n"
    out = _import(world, header, expect=2)
    assert "would archive all 2 customers" in out.stderr and "--allow-empty" in out.stderr
    assert _names(world) == ["Acme Corp", "Globex"]
    _import(world, header, "--allow-empty")
    assert _names(world) == [] and _names(world, "--archived") == ["Acme Corp", "Globex"]


def test_without_mirror_import_only_adds(world: World) -> None:
    _import(world, BOTH)
    path = world.tmp / "more.csv"
    path.write_text("customer,domains,contact_name,contact_email\nInitech,initech.io,,\n")
    out = json.loads(world.cli("customers", "import", str(path), "--json").stdout)
    assert out["mirror"] is False and out["customers"]["added"] == 1
    assert out["customers"]["archived"] == 0
    assert _names(world) == ["Acme Corp", "Globex", "Initech"]


def _status(world: World) -> dict[str, Any]:
    return json.loads(world.cli("status", "--json", expect=None).stdout)  # type: ignore[no-any-return]


def test_sync_applies_the_directory_file_first_and_reports_a_broken_one(world: World) -> None:
    world.rep("alice")
    (world.tmp / "customers.csv").write_text(BOTH)
    world.write_config(extra='[directory]\nfile = "customers.csv"\n')
    world.deliver("alice", make_message(sender="hank@globex.io", message_id="<s1@globex.io>"))
    out = world.cli("sync").stdout
    assert out.startswith("directory: customers 2 added")
    assert _record(world, "s1@globex.io")["customers"][0]["name"] == "Globex"
    assert world.cli("sync").stdout.startswith("directory: unchanged")

    (world.tmp / "customers.csv").write_text(ACME_ONLY + "Bad,co.uk,,\n")
    out = world.cli("sync", expect=1).stdout
    assert "directory: FAILED, nothing changed" in out and "line 3:" in out
    assert _names(world) == ["Acme Corp", "Globex"]
    directory = _status(world)["directory"]
    assert directory["state"] == "error" and "line 3:" in directory["last_error"]
    assert directory["counts"]["customers"]["added"] == 2  # what the last good file did
    text = world.cli("status", expect=None).stdout
    assert "directory: ERROR" in text and "nothing changed" in text

    (world.tmp / "customers.csv").write_text(ACME_ONLY)
    assert "customers 0 added, 0 updated, 1 archived" in world.cli("sync").stdout
    assert _status(world)["directory"]["state"] == "ok"
    assert _names(world) == ["Acme Corp"]


def _script(tmp: Path, body: str) -> Path:
    script = tmp / "export.sh"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


def test_a_command_prints_the_directory(world: World) -> None:
    world.rep("alice")
    csv_path = world.tmp / "export.csv"
    csv_path.write_text(ACME_ONLY)
    script = _script(world.tmp, 'cat "$1"\n')
    world.write_config(
        extra=f"[directory]\ncommand = [{json.dumps(str(script))}, {json.dumps(str(csv_path))}]\n"
    )
    assert world.cli("sync").stdout.startswith("directory: customers 1 added")
    assert _names(world) == ["Acme Corp"]

    _script(world.tmp, 'echo "export failed: token expired" >&2\nexit 3\n')
    out = world.cli("sync", expect=1).stdout
    assert "exited with status 3: export failed: token expired" in out
    assert _names(world) == ["Acme Corp"]

    _script(world.tmp, "sleep 30\n")
    world.write_config(extra=f"[directory]\ncommand = [{json.dumps(str(script))}]\ntimeout = 0.5\n")
    out = world.cli("sync", expect=1).stdout
    assert "took longer than 0.5 s" in out
    assert _names(world) == ["Acme Corp"]


@pytest.mark.postgres
def test_daemons_sharing_postgresql_apply_a_change_once(pg_admin: str, tmp_path: Path) -> None:
    """Several daemons see the same new file at once: one applies it, the others find it
    applied (they wait on the directory lock, then compare fingerprints)."""
    from syncd.store.database import open_database

    crm = tmp_path / "crm.csv"
    crm.write_text(BOTH)
    with scratch_database(pg_admin) as db_url:
        _race(open_database(db_url, pool_size=8), crm)


def _race(engine: Any, crm: Path) -> None:
    import threading

    from sqlalchemy import func, select

    from syncd.config import DirectoryConfig
    from syncd.engine.directory_sync import DirectorySource
    from syncd.schema.tables import audit_log, customers

    sources = [DirectorySource(engine, DirectoryConfig(file=str(crm))) for _ in range(4)]
    results: list[str] = []
    start = threading.Barrier(len(sources))

    def check(source: DirectorySource) -> None:
        start.wait()
        results.append(source.check().result)

    threads = [threading.Thread(target=check, args=(s,)) for s in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    with engine.connect() as conn:
        names = sorted(conn.scalars(select(customers.c.name)))
        applied = conn.scalar(
            select(func.count())
            .select_from(audit_log)
            .where(audit_log.c.action == "directory-mirror")
        )
    engine.dispose()
    assert sorted(results) == ["applied", "unchanged", "unchanged", "unchanged"]
    assert names == ["Acme Corp", "Globex"] and applied == 1


def test_a_writer_is_not_kept_waiting_while_a_large_file_is_mirrored(
    dovecot: Any, tmp_path: Path
) -> None:
    # The import took SQLite's write lock before planning and held it to the end: a
    # `tasks add` during a million-row mirror failed after 30 s.  Now it plans outside any
    # write transaction and writes [directory] batch rows per transaction.
    import threading
    import time

    from syncd.store.database import open_database
    from syncd.store.directory import ensure_customer

    world = World(dovecot, tmp_path, f"sqlite:///{tmp_path / 'syncd.db'}")
    world.write_config(extra='[directory]\nfile = "crm.csv"\nbatch = 200\n')
    rows = 30_000
    text = "customer,domains,contact_name,contact_email\n" + "".join(
        f"Customer {i // 5},c{i // 5}.com,Person {i},p{i}@c{i // 5}.com\n" for i in range(rows)
    )
    world.cli("customers", "list")  # the database is made before anything is timed
    writer_engine = open_database(world.db_url)
    waits: list[float] = []
    done = threading.Event()

    def write() -> None:
        n = 0
        while not done.is_set():
            n += 1
            started = time.monotonic()
            with writer_engine.begin() as conn:
                ensure_customer(conn, f"Hand-made {n}", [])
            waits.append(time.monotonic() - started)
            time.sleep(0.05)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        started = time.monotonic()
        counts = _counts(world, text)
        took = time.monotonic() - started
    finally:
        done.set()
        writer.join()
        writer_engine.dispose()
    assert counts["contacts"]["added"] == rows
    assert counts["customers"]["added"] == rows // 5
    print(f"mirror of {rows} rows: {took:.1f}s; {len(waits)} writes, longest {max(waits):.2f}s")
    assert len(waits) >= 5  # the writer did write during the mirror
    assert max(waits) < 1.0, sorted(waits)[-5:]
    # Made while the mirror ran, and not in the file: those made before it read the
    # directory are archived by it, the others by the next run.
    again = _counts(world, text)
    assert counts["customers"]["archived"] + again["customers"]["archived"] == len(waits)
    assert again["contacts"]["unchanged"] == rows
