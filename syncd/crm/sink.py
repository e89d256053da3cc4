"""Pushing one CRM's pending records and tasks, and pulling its directory and tasks back.

A round: take the outbox's new events (store/crm_queue.py), claim what is due, render the
subjects as they are now (crm/render.py), and for each one create, update or delete its
CRM copy through the ``Crm`` (crm/base.py), then record the outcome under the claim's
epoch.  Never twice: a subject claimed before (its epoch above 1) whose copy syncd has not
recorded may have been created by a push that died between the CRM's answer and syncd's
commit, so the CRM is searched for the copy's marker before anything is created.

What the CRM refuses (4xx) fails alone with its answer; 429, 5xx and the network are
retried with exponential backoff, the CRM's Retry-After honoured; a CRM that is down only
ever holds its own sink's thread.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine

from syncd.config import CrmConfig
from syncd.connectors.crm_http import deadline_for
from syncd.crm.base import Crm, DirectoryEntry, NotYet, Pushed, Refused, Target
from syncd.crm.render import render_records, render_tasks
from syncd.domain.directory_file import parse_directory
from syncd.errors import RemoteError, describe
from syncd.logs import get_logger
from syncd.store import crm_queue as queue
from syncd.store.directory_mirror import import_directory
from syncd.store.tasks import set_status

log = get_logger("syncd.crm")

BATCH = 50


def lease_for(config: CrmConfig) -> timedelta:
    """Claims are renewed while a batch is pushed (every third of a lease), so a lease only
    has to outlast one request: a daemon killed mid-push holds its subjects this long."""
    return timedelta(seconds=max(10.0, 2 * deadline_for(config.timeout)))


BACKOFF_BASE = 5.0  # seconds, doubled per failed attempt
BACKOFF_CAP = 3600.0


def backoff(attempts: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds before the next try after ``attempts`` failures (full jitter, capped)."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(attempts, 20))
    delay = rng.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, BACKOFF_CAP))
    return delay


def marker(installation: str, subject: str) -> str:
    """What a CRM copy carries so that an interrupted push finds it again."""
    return f"syncd:{installation}:{subject}"


def copy_type(kind: str, item: dict[str, Any]) -> str:
    """What ``Crm.find_copy`` looks for: a task, a note (CRMs keep notes apart from the
    conversations: HubSpot's notes, BottleCRM's comments), or an interaction."""
    if kind == "task":
        return "task"
    return "note" if item.get("kind") == "note" else "interaction"


@dataclass
class Round:
    pushed: int = 0
    deleted: int = 0
    retried: int = 0
    failed: int = 0
    lost: int = 0  # claims fenced off by another daemon
    errors: list[str] = field(default_factory=list)


class CrmSink:
    def __init__(
        self, engine: Engine, config: CrmConfig, crm: Crm, daemon_id: str, installation: str
    ) -> None:
        self.engine = engine
        self.config = config
        self.crm = crm
        self.daemon_id = daemon_id
        self.installation = installation
        self.lease = lease_for(config)
        self.rng = random.Random()  # noqa: S311 (jitter, not secrets)
        self._contacts: dict[str, str | None] = {}  # address -> CRM contact id (looked up)
        self._accounts: dict[str, str | None] = {}

    @property
    def name(self) -> str:
        return self.config.name

    # --- push ---------------------------------------------------------------------------------

    def push(self, *, limit: int = BATCH, rounds: int | None = None) -> Round:
        """Push what is due, batch by batch, until nothing is due (or ``rounds`` ran)."""
        total = Round()
        n = 0
        while rounds is None or n < rounds:
            n += 1
            with self.engine.begin() as conn:
                while queue.take_new(conn, self.name, self.config.push, self.config.since):
                    pass
            with self.engine.begin() as conn:
                claims = queue.claim(conn, self.name, self.daemon_id, limit=limit, lease=self.lease)
            if not claims:
                break
            done = self._push_claims(claims)
            for key in ("pushed", "deleted", "retried", "failed", "lost"):
                setattr(total, key, getattr(total, key) + getattr(done, key))
            total.errors += done.errors
            if done.retried and not (done.pushed or done.deleted):
                break  # the CRM is failing: the rest waits for its backoff
        return total

    def _push_claims(self, claims: list[queue.Claim]) -> Round:
        out = Round()
        record_ids = [int(c.subject[7:]) for c in claims if c.subject.startswith("record:")]
        task_ids = [int(c.subject[5:]) for c in claims if c.subject.startswith("task:")]
        with self.engine.connect() as conn:
            recs = render_records(conn, record_ids)
            tks = render_tasks(conn, task_ids)
            known = queue.crm_ids(conn, self.name, [c.subject for c in claims])
            people = queue.crm_ids(
                conn,
                self.name,
                [
                    f"contact:{p['contact_id']}"
                    for r in recs.values()
                    for p in r["participants"]
                    if p["contact_id"]
                ]
                + [f"customer:{c['id']}" for r in recs.values() for c in r["customers"]]
                + [f"customer:{t['customer_id']}" for t in tks.values() if t["customer_id"]],
            )
        renewed = time.monotonic()
        for n, claim in enumerate(claims):
            if time.monotonic() - renewed > self.lease.total_seconds() / 3:
                with self.engine.begin() as conn:
                    queue.renew(conn, self.name, claims[n:], lease=self.lease)
                renewed = time.monotonic()
            kind, _, raw_id = claim.subject.partition(":")
            item = recs.get(int(raw_id)) if kind == "record" else tks.get(int(raw_id))
            had = known.get(claim.subject)
            previous = Pushed(*had) if had else None
            try:
                if item is None:
                    if previous is not None:
                        self.crm.delete(previous.crm_type, previous.crm_id)
                    result: Pushed | None = None
                else:
                    result = self._push_one(kind, item, claim, previous, people)
            except Refused as refused:
                with self.engine.begin() as conn:
                    queue.fail(conn, self.name, claim, status=refused.status, error=refused.answer)
                log.warning(
                    "crm.refused", crm=self.name, subject=claim.subject, answer=refused.answer[:300]
                )
                out.failed += 1
                continue
            except RemoteError as err:
                delay = backoff(claim.attempts, getattr(err, "retry_after", None), self.rng)
                with self.engine.begin() as conn:
                    queue.retry(
                        conn, self.name, claim, delay=delay, status=None, error=describe(err)
                    )
                    queue.note_error(conn, self.name, describe(err))
                out.retried += 1
                out.errors.append(describe(err))
                # The next subjects would meet the same CRM: they wait for its backoff too.
                self._release_rest(claims, claim, delay)
                break
            except NotYet as wait:
                with self.engine.begin() as conn:
                    queue.retry(conn, self.name, claim, delay=wait.seconds, status=None, error="")
                continue
            with self.engine.begin() as conn:
                if not queue.done(conn, self.name, claim):
                    out.lost += 1  # fenced off: another daemon holds it now, and finds the copy
                    continue
                if result is None:
                    queue.forget_object(conn, self.name, claim.subject)
                else:
                    queue.remember(
                        conn, self.name, claim.subject, result.crm_type, result.crm_id, result.state
                    )
                queue.count_success(conn, self.name, 1)
            if result is None:
                out.deleted += 1
            else:
                out.pushed += 1
        return out

    def _release_rest(self, claims: list[queue.Claim], failed: queue.Claim, delay: float) -> None:
        rest = claims[claims.index(failed) + 1 :]
        with self.engine.begin() as conn:
            for claim in rest:
                queue.release(conn, self.name, claim, delay=delay)

    def _push_one(
        self,
        kind: str,
        item: dict[str, Any],
        claim: queue.Claim,
        previous: Pushed | None,
        people: dict[str, tuple[str, str, str | None]],
    ) -> Pushed:
        mark = marker(self.installation, claim.subject)
        if kind == "record":
            target = self._record_target(item, people)
        else:
            account = people.get(f"customer:{item['customer_id']}")
            target = Target(account=account[1] if account else self._account(item["customer"]))
        if previous is None and claim.epoch > 1:
            # Claimed before: that push may have created the copy and died before committing.
            crm_type = copy_type(kind, item)
            found = self.crm.find_copy(crm_type, mark, target, str(item.get("title") or ""))
            if found is not None:
                previous = Pushed(crm_type, found, None)
        if kind == "record":
            return self.crm.push_record(item, target, mark, previous)
        return self.crm.push_task(item, target, mark, previous)

    def _record_target(
        self, record: dict[str, Any], people: dict[str, tuple[str, str, str | None]]
    ) -> Target:
        contacts: list[str] = []
        for p in record["participants"]:
            mapped = people.get(f"contact:{p['contact_id']}") if p["contact_id"] else None
            crm_id = mapped[1] if mapped else None
            if crm_id is None and p["contact_id"]:
                crm_id = self._contact(p["address"])
            if crm_id is not None and crm_id not in contacts:
                contacts.append(crm_id)
        account = None
        for c in record["customers"]:
            mapped = people.get(f"customer:{c['id']}")
            account = mapped[1] if mapped else self._account(c["name"])
            if account is not None:
                break
        return Target(
            contact=contacts[0] if contacts else None, account=account, contacts=tuple(contacts)
        )

    def _contact(self, address: str) -> str | None:
        if address not in self._contacts:
            self._contacts[address] = self.crm.find_contact(address)
        return self._contacts[address]

    def _account(self, name: str | None) -> str | None:
        if not name:
            return None
        if name not in self._accounts:
            self._accounts[name] = self.crm.find_account(name)
        return self._accounts[name]

    # --- pull ---------------------------------------------------------------------------------

    def pull_tasks(self) -> int:
        """Tasks completed or deleted in the CRM come back done or dismissed; the number closed."""
        with self.engine.connect() as conn:
            mapped = queue.objects_of_type(conn, self.name, "task")
            open_ids = {int(s[5:]): crm_id for s, (crm_id, _) in mapped.items()}
            live = render_tasks(conn, list(open_ids))
        wanted = {
            tid: crm_id
            for tid, crm_id in open_ids.items()
            if tid in live and live[tid]["status"] in ("open", "snoozed")
        }
        if not wanted:
            return 0
        states = self.crm.task_states(list(wanted.values()))
        closed = 0
        with self.engine.begin() as conn:
            for tid, crm_id in wanted.items():
                state = states.get(crm_id, "open")
                if state == "open":
                    continue
                status = "done" if state == "done" else "dismissed"
                if set_status(conn, tid, status, by="crm"):
                    closed += 1
                if state is None:
                    queue.forget_object(conn, self.name, f"task:{tid}")
        return closed

    def pull_directory(self) -> dict[str, dict[str, int]]:
        """The CRM's accounts and contacts mirrored into syncd's directory (archive, restore
        and every rule of `customers import --mirror`), and the map of their ids."""
        entries = self.crm.directory()
        self._contacts.clear()  # looked up anew: one added there since is found now
        self._accounts.clear()
        text = directory_csv(entries)
        file = parse_directory(text, where=f"crm {self.name}")
        with self.engine.begin() as conn:
            imported = import_directory(
                conn, file, mirror=True, source=f"crm:{self.name}", allow_empty=False
            )
            _map_directory(conn, self.name, entries)
            queue.note_pull(conn, self.name, len(entries))
        return imported.counts

    def sync(self) -> dict[str, Any]:
        """`syncd crm sync`: pull the directory, push what is pending now, pull the tasks.
        A CRM that cannot be reached fails each step alone, with its error in ``errors``."""
        out: dict[str, Any] = {"errors": []}
        if self.config.directory:
            out["directory"] = self._step(out, self.pull_directory)
        with self.engine.begin() as conn:
            queue.make_due(conn, self.name)
        done = self.push()
        out["pushed"] = done.pushed
        out["deleted"] = done.deleted
        out["failed"] = done.failed
        out["retried"] = done.retried
        out["errors"] += done.errors[:5]
        if "tasks" in self.config.push:
            out["tasks_closed"] = self._step(out, self.pull_tasks)
        return out

    def _step(self, out: dict[str, Any], step: Any) -> Any:
        try:
            return step()
        except (RemoteError, Refused) as err:
            said = describe(err) if isinstance(err, RemoteError) else err.answer
            with self.engine.begin() as conn:
                queue.note_error(conn, self.name, said)
            out["errors"].append(said)
            return None


def directory_csv(entries: list[DirectoryEntry]) -> str:
    """The CRM's directory as the directory file syncd's mirror reads."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["customer", "domains", "contact_name", "contact_email"])
    for entry in entries:
        writer.writerow([entry.name, ";".join(entry.domains), "", ""])
        for _, name, addresses in entry.contacts:
            for address in addresses:
                writer.writerow([entry.name, "", name, address])
    return buffer.getvalue()


def _map_directory(conn: Any, crm: str, entries: list[DirectoryEntry]) -> None:
    from sqlalchemy import func, select

    from syncd.schema.tables import contact_addresses, customers

    by_name = {
        name.lower(): cid for cid, name in conn.execute(select(customers.c.id, customers.c.name))
    }
    for entry in entries:
        cid = by_name.get(" ".join(entry.name.split()).lower())
        if cid is not None:
            queue.remember(conn, crm, f"customer:{cid}", "account", entry.crm_id)
        for crm_id, _, addresses in entry.contacts:
            if not addresses:
                continue
            contact_id = conn.scalar(
                select(contact_addresses.c.contact_id).where(
                    func.lower(contact_addresses.c.address) == addresses[0].lower()
                )
            )
            if contact_id is not None:
                queue.remember(conn, crm, f"contact:{contact_id}", "contact", crm_id)
