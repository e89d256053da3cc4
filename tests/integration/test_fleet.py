"""Several `syncd run` daemons on one PostgreSQL and one Dovecot: balanced shares, one IDLE
watcher per mailbox fleet-wide, joins, SIGTERM and kill -9 handovers, a paused holder."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from syncd.domain.assignment import assign, source_key
from syncd.schema.tables import daemons, folder_cursors, records, source_health
from tests.conftest import World
from tests.daemon import DaemonProcess, wait_until
from tests.mail import make_message
from tests.servers.dovecot import Dovecot
from tests.servers.ports import free_port
from tests.servers.postgres import scratch_database
from tests.servers.sample import CUSTOMERS_CSV

pytestmark = [pytest.mark.dovecot, pytest.mark.daemon, pytest.mark.postgres]

# Polls every 10 minutes: within a test, only IDLE and a lease changing hands explain mail
# being captured.
FLEET = "[sync]\ninterval = 600\njitter = 0.1\nconcurrency = 4\n"


class Fleet:
    """Daemons sharing one config (each its own metrics port) and one database."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.engine = create_engine(world.db_url)
        self.procs: dict[str, DaemonProcess] = {}
        self.ports: dict[str, int] = {}

    def start(self, name: str) -> DaemonProcess:
        port = free_port()
        config = self.world.tmp / f"{name}.toml"
        config.write_text(
            self.world.config_path.read_text() + f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
        )
        proc = DaemonProcess(config, self.world.tmp / f"{name}.log")
        self.procs[name], self.ports[name] = proc, port  # closed at the end even if it fails
        return proc.start()

    def id_of(self, name: str) -> str:
        proc = self.procs[name].proc
        assert proc is not None
        with self.engine.connect() as conn:
            return str(conn.scalar(select(daemons.c.id).where(daemons.c.pid == proc.pid)))

    def holders(self) -> dict[str, str | None]:
        with self.engine.connect() as conn:
            return dict(conn.execute(select(source_health.c.name, source_health.c.daemon_id)).all())  # type: ignore[arg-type]

    def held_by(self, name: str) -> list[str]:
        me = self.id_of(name)
        return sorted(box for box, holder in self.holders().items() if holder == me)

    def metric(self, name: str, metric: str) -> float:
        url = f"http://127.0.0.1:{self.ports[name]}/metrics"
        """The metric's value, summed over its labels (logins are counted by outcome)."""
        found: list[float] = []
        with urllib.request.urlopen(url, timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith((metric + " ", metric + "{")):
                    found.append(float(line.rsplit(" ", 1)[1]))
        if not found:
            raise AssertionError(f"{metric} not exported")
        return sum(found)

    def records(self) -> tuple[int, int]:
        with self.engine.connect() as conn:
            total = conn.scalar(select(func.count()).select_from(records))
            distinct = conn.scalar(select(func.count(func.distinct(records.c.key))))
        return int(total or 0), int(distinct or 0)

    def settled(self, names: list[str], boxes: int) -> bool:
        """Every mailbox held by one of ``names``, each watching exactly what it holds."""
        ids = {self.id_of(n) for n in names}
        holders = self.holders()
        if len(holders) != boxes or not set(holders.values()) <= ids:
            return False
        # ...and as the rendezvous assignment over these daemons says.
        want = assign([source_key("mailbox", box) for box in holders], ids)
        if any(
            want[holder].count(f"mailbox:{box}") != 1 for box, holder in holders.items() if holder
        ):
            return False
        return all(
            self.metric(n, "syncd_watchers_open") == len(self.held_by(n))
            and self.metric(n, "syncd_sources_held") == len(self.held_by(n))
            for n in names
        )

    def close(self) -> None:
        for proc in self.procs.values():
            proc.close()
        self.engine.dispose()


@pytest.fixture
def fleet_world(dovecot: Dovecot, pg_admin: str, tmp_path: Path) -> Iterator[Fleet]:
    with scratch_database(pg_admin) as db_url:
        fleet = Fleet(World(dovecot, tmp_path, db_url))
        try:
            yield fleet
        finally:
            fleet.close()


def _deliver_to(fleet: Fleet, boxes: list[str], tag: str) -> None:
    for box in boxes:
        fleet.world.deliver(box, make_message(message_id=f"<{tag}-{box}@acme.com>"))


def test_daemons_share_the_mailboxes_and_hand_them_over(fleet_world: Fleet) -> None:
    fleet, world = fleet_world, fleet_world.world
    boxes = [f"rep{n}" for n in range(40)]
    for box in boxes:
        world.rep(box)
    world.customers(CUSTOMERS_CSV)
    world.write_config(extra=FLEET, mailbox={b: {"folders": ["INBOX"]} for b in boxes})
    fleet.start("a")
    fleet.start("b")
    wait_until(lambda: fleet.settled(["a", "b"], 40), 60, "two daemons settled")
    shares = {n: len(fleet.held_by(n)) for n in ("a", "b")}
    assert sum(shares.values()) == 40 and min(shares.values()) >= 8, shares
    # One IDLE connection per mailbox in the whole fleet, not one per daemon.
    # (A watcher that was handed over closes at its daemon's next beat.)
    wait_until(lambda: world.dovecot.connections() <= 40 + 4, 75, "handed-over watchers closed")
    assert world.dovecot.connections() >= 40
    status = json.loads(world.cli("status", "--json").stdout)
    assert sorted(d["sources_held"] for d in status["daemons"]) == sorted(shares.values())
    assert {s["held_by"] for s in status["sources"]} == {fleet.id_of("a"), fleet.id_of("b")}
    assert fleet.metric("a", "syncd_imap_logins_total") >= shares["a"]

    _deliver_to(fleet, boxes, "first")
    wait_until(lambda: fleet.records()[0] == 40, 30, "every first message, by IDLE")

    # A third daemon takes its share within a minute; the others stop watching it.
    fleet.start("c")
    joined = wait_until(lambda: fleet.settled(["a", "b", "c"], 40), 60, "c took its share")
    taken = fleet.held_by("c")
    assert len(taken) >= 5, taken
    print(f"join: c holds {len(taken)} of 40 after {joined:.1f}s")

    # SIGTERM: c hands over at once; mail to its mailboxes is captured by the others, who
    # poll at once only the mailboxes whose watch found INBOX past the cursor.
    offsets = {n: len(fleet.procs[n].log.read_text()) for n in ("a", "b")}
    code, _took = fleet.procs["c"].stop()
    assert code == 0
    stopped_at = time.monotonic()
    mailed = taken[: (len(taken) + 1) // 2]
    _deliver_to(fleet, mailed, "after-term")
    wait_until(lambda: fleet.records()[0] == 40 + len(mailed), 30, "mail after SIGTERM")
    handover = time.monotonic() - stopped_at
    print(f"SIGTERM handover: {handover:.1f}s")
    assert handover < 15
    wait_until(lambda: fleet.settled(["a", "b"], 40), 30, "a and b settled again")
    time.sleep(2)  # a poll of the others would have come by now
    polled = set()
    for name, offset in offsets.items():
        for line in fleet.procs[name].log.read_text()[offset:].splitlines():
            event = json.loads(line)
            if event.get("event") == "folder.synced" and event.get("mailbox") in taken:
                polled.add(event["mailbox"])
    assert polled == set(mailed), (sorted(polled), sorted(mailed))

    # kill -9: b's heartbeat goes stale and a takes its mailboxes over.
    lost = fleet.held_by("b")
    fleet.procs["b"].kill()
    killed_at = time.monotonic()
    _deliver_to(fleet, lost, "after-kill")
    expected = 40 + len(mailed) + len(lost)
    wait_until(lambda: fleet.records()[0] == expected, 90, "mail after kill -9")
    failover = time.monotonic() - killed_at
    print(f"kill -9 failover: {failover:.1f}s")
    assert failover < 60
    wait_until(lambda: fleet.settled(["a"], 40), 30, "a holds everything")
    assert fleet.records() == (expected, expected)  # nothing captured twice


def test_a_paused_holder_that_wakes_writes_nothing_for_what_it_lost(fleet_world: Fleet) -> None:
    fleet, world = fleet_world, fleet_world.world
    world.rep("big")
    world.dovecot.deliver_many(
        world.logins["big"],
        [make_message(message_id=f"<bulk{n}@acme.com>", subject=f"Bulk {n}") for n in range(3000)],
    )
    world.customers(CUSTOMERS_CSV)
    world.write_config(capture="batch_size = 50", extra=FLEET)
    a = fleet.start("a")
    wait_until(lambda: fleet.records()[0] >= 100, 60, "a's backfill under way")
    a.signal(signal.SIGSTOP)  # a VM paused mid-backfill: a holds the lease, a batch in hand
    paused_at = fleet.records()[0]
    fleet.start("b")
    # a's heartbeat goes stale; b takes the mailbox over and finishes the backfill.  If a
    # was paused inside a transaction (idle in it, or in the middle of a pipelined
    # statement, where no server timeout applies), it still holds the lease row's lock: b
    # ends a's sessions once a's heartbeat is stale, and claims at its next beat.
    wait_until(lambda: fleet.holders().get("big") == fleet.id_of("b"), 60, "b took over")
    wait_until(lambda: fleet.records()[0] == 3000, 120, "b finished the backfill")
    assert fleet.records()[0] > paused_at
    cursor = _cursor(fleet)
    woke = len(a.log.read_text())
    a.signal(signal.SIGCONT)
    # a wakes with a batch in hand: its commit is fenced out.  Watch for a few beats.
    lowest = cursor
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        lowest = min(lowest, _cursor(fleet))
        time.sleep(0.1)
    assert lowest == cursor  # the cursor never went back to a's stale batch
    after = [json.loads(line) for line in a.log.read_text()[woke:].splitlines() if line.strip()]
    events = [line["event"] for line in after]
    # Fenced out at its commit (lease_lost); or, when it slept inside an open transaction
    # that PostgreSQL ended meanwhile (a lease's worth of idling), its connection gone
    # (crashed); or, when it woke between two batches, its heartbeat saw the new owner first
    # and it dropped the mailbox (fleet.changed).  Whichever comes first, it writes nothing
    # before it stops: no folder synced, and the cursor and records above are unchanged.
    ends = ("source.lease_lost", "source.crashed", "fleet.changed")
    stopped = [i for i, e in enumerate(events) if e in ends]
    assert stopped, events
    assert "folder.synced" not in events  # a holds nothing but "big": it syncs nothing
    assert fleet.records() == (3000, 3000)
    a_ = fleet.procs["a"].stop()
    assert a_[0] == 0


def _cursor(fleet: Fleet) -> int:
    with fleet.engine.connect() as conn:
        return int(
            conn.scalar(select(folder_cursors.c.last_uid).where(folder_cursors.c.mailbox == "big"))
            or 0
        )
