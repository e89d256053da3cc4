"""`syncd forget` in the outbox: what it announces, and no stored event, delivered or not,
keeps naming the person.

``Before`` notes, before the forget changes anything, which records and tasks it touches;
``announce`` (last in the forget's transaction) redacts the stored events, then emits
``record.deleted``, ``record.updated`` for the records kept without the person,
``task.updated`` for their tasks, and ``contact.forgotten`` the first time.

Event data is JSON, so it is redacted value by value (never as raw text, where an escape
could hide a name from a substring search): the person's entries leave the participant
lists, a meeting they organised names the keyed label instead, and every string loses
the address and, in events about the person's own records and tasks, the display names.
Events about records the forget deletes keep only the record's id and kind, like the
``record.deleted`` event that follows them.  ``contact.forgotten`` events are left alone:
they carry the address to the consumers until delivered (see store/event_retention.py).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, func, or_, select, update

from syncd.domain.privacy import Redactor, audit_label
from syncd.schema.tables import events, records, tasks
from syncd.store import events as outbox_events
from syncd.store import outbox
from syncd.store import tasks as task_store
from syncd.store.events import (
    CONTACT_FORGOTTEN,
    RECORD_DELETED,
    RECORD_UPDATED,
    TASK_UPDATED,
    Event,
)
from syncd.store.sql import chunks


class Before:
    """What the outbox must know of the person's records and tasks before they change."""

    def __init__(
        self, conn: Connection, touched: list[int], doomed: list[int], tombstone: str
    ) -> None:
        self.kept = sorted(set(touched) - set(doomed))
        self.erased: dict[int, tuple[str, Any]] = {}  # record id -> kind, occurred_at
        self.titles: dict[int, str] = {}  # task id -> title, of the kept records' tasks
        for part in chunks(doomed):
            for rid, kind, when in conn.execute(
                select(records.c.id, records.c.kind, records.c.occurred_at).where(
                    records.c.id.in_(part)
                )
            ):
                self.erased[rid] = (kind, when)
        self.task_ids: set[int] = set()
        doomed_tasks: list[int] = []
        for part in chunks(touched):
            for tid, rid, title in conn.execute(
                select(tasks.c.id, tasks.c.record_id, tasks.c.title).where(
                    tasks.c.record_id.in_(part)
                )
            ):
                self.task_ids.add(tid)
                if rid in self.erased:
                    doomed_tasks.append(tid)
                else:
                    self.titles[tid] = title
        # A task of an erased record is deleted or left as a redacted tombstone: consumers
        # see it dismissed, under the tombstone's title, never the person's name.
        self.dismissed = [
            replace(
                event,
                data={
                    **event.data,
                    "title": tombstone,
                    "status": "dismissed",
                    "record_id": None,
                    "closed_by_record_id": None,
                    "snoozed_until": None,
                },
                occurred_at=None,
            )
            for event in task_store.task_events(conn, TASK_UPDATED, doomed_tasks)
        ]


def announce(
    conn: Connection,
    before: Before,
    *,
    address: str,
    digest: str,
    spellings: set[str],
    theirs: Redactor,
    everywhere: Redactor,
    first: bool,
) -> None:
    """Redact the outbox, then emit what changed: the records deleted, the records and tasks
    kept without the person, and, the first time, ``contact.forgotten``."""
    stubs = {rid: {"id": rid, "kind": kind} for rid, (kind, _) in before.erased.items()}
    scrub_events(
        conn,
        subjects={*(f"record:{r}" for r in [*before.kept, *before.erased])}
        | {f"task:{t}" for t in before.task_ids},
        theirs=theirs,
        everywhere=everywhere,
        spellings=spellings,
        label=audit_label(digest),
        erased={f"record:{rid}": stub for rid, stub in stubs.items()},
    )
    retitled = []
    for part in chunks(sorted(before.titles)):
        for tid, title in conn.execute(
            select(tasks.c.id, tasks.c.title).where(tasks.c.id.in_(part))
        ):
            if title != before.titles[tid]:
                retitled.append(tid)
    batch = [
        Event(RECORD_DELETED, f"record:{rid}", stubs[rid], when)
        for rid, (_, when) in sorted(before.erased.items())
    ]
    batch += outbox.record_events(conn, RECORD_UPDATED, before.kept)
    batch += before.dismissed
    batch += task_store.task_events(conn, TASK_UPDATED, retitled)
    if first:
        batch.append(Event(CONTACT_FORGOTTEN, f"contact:{digest}", {"address": address}))
    outbox_events.emit_many(conn, batch)


def scrub_events(
    conn: Connection,
    *,
    subjects: Collection[str],
    theirs: Redactor,
    everywhere: Redactor,
    spellings: Collection[str],
    label: str,
    erased: Mapping[str, dict[str, Any]],
) -> int:
    """Redact the person from every stored event; returns events changed.

    ``subjects``: the person's records and tasks ("record:<id>", "task:<id>"), whose events
    lose the display names too; ``erased``: subject -> the stub that replaces the data of
    events about a record being deleted."""
    found: dict[int, tuple[str, str]] = {}
    for part in chunks(sorted(subjects)):
        found.update(
            (row.id, (row.subject, row.data))
            for row in conn.execute(
                select(events.c.id, events.c.subject, events.c.data).where(
                    events.c.subject.in_(part), events.c.type != CONTACT_FORGOTTEN
                )
            )
        )
    tests = [
        func.lower(events.c.data).contains(form, autoescape=True)
        for needle in everywhere.needles
        for form in _json_forms(needle)
    ]
    if tests:
        found.update(
            (row.id, (row.subject, row.data))
            for row in conn.execute(
                select(events.c.id, events.c.subject, events.c.data).where(
                    or_(*tests), events.c.type != CONTACT_FORGOTTEN
                )
            )
        )
    gone = {s.lower() for s in spellings}
    changed = 0
    for event_id, (subject, text) in sorted(found.items()):
        if subject in erased:
            data: Any = erased[subject]
        else:
            rule = theirs if subject in subjects else everywhere
            data = _scrub(json.loads(text), rule, gone, label)
        new = outbox_events.dumps(data)
        if new != text:
            changed += conn.execute(
                update(events).where(events.c.id == event_id).values(data=new)
            ).rowcount
    return changed


def _json_forms(needle: str) -> set[str]:
    """How a lower-cased needle may appear inside stored JSON text."""
    return {
        needle,
        json.dumps(needle, ensure_ascii=False)[1:-1],
        json.dumps(needle)[1:-1].lower(),
    }


def _scrub(value: Any, rule: Redactor, gone: Collection[str], label: str) -> Any:
    if isinstance(value, str):
        return rule.redact(value)
    if isinstance(value, list):
        return [_scrub(v, rule, gone, label) for v in value]
    if not isinstance(value, dict):
        return value
    out = dict(value)
    people = out.get("participants")
    if isinstance(people, list):
        out["participants"] = [
            p
            for p in people
            if not (isinstance(p, dict) and str(p.get("address", "")).lower() in gone)
        ]
    if isinstance(out.get("organizer"), str) and out["organizer"].lower() in gone:
        out["organizer"] = label
    return {k: _scrub(v, rule, gone, label) for k, v in out.items()}
