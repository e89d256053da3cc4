"""Follow-up tasks in the rep's own CalDAV task list ([[calendar]] tasks_calendar).

Each pass first deletes the VTODOs of tasks about forgotten people, then reads back what
the rep did in their app (a completed VTODO is a done
task, a cancelled or deleted one a dismissed task), then writes what changed on our side.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine

from syncd.config import CalendarConfig
from syncd.connectors.base import CalendarSession
from syncd.domain.todos import render_todo, todo_status
from syncd.errors import RemoteError
from syncd.logs import get_logger
from syncd.store import tasks as store
from syncd.store.events import TASK_UPDATED

log = get_logger("syncd.tasks")


class TaskLists:
    """Task list URLs found so far, so that a daemon's polls skip discovery.

    Owned by whoever runs the passes (the daemon holds one for its lifetime) and shared
    by its worker threads, hence the lock; keyed by everything that names the list, so a
    reloaded config that points a source elsewhere looks it up again.
    """

    def __init__(self) -> None:
        self._urls: dict[tuple[str, str, str, str], str] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(source: CalendarConfig) -> tuple[str, str, str, str]:
        assert source.tasks_calendar is not None
        return (source.name, source.url, source.username, source.tasks_calendar)

    def get(self, source: CalendarConfig) -> str | None:
        with self._lock:
            return self._urls.get(self.key(source))

    def remember(self, source: CalendarConfig, url: str) -> None:
        with self._lock:
            self._urls[self.key(source)] = url

    def forget(self, source: CalendarConfig) -> None:
        with self._lock:
            self._urls.pop(self.key(source), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._urls)


def sync_task_list(
    engine: Engine,
    source: CalendarConfig,
    session: CalendarSession,
    lists: TaskLists | None = None,
    *,
    fence: Callable[[Connection], None] = lambda _conn: None,
) -> dict[str, int]:
    """One pass over ``source``'s task list; ``lists`` remembers its URL between passes
    (without it, every pass discovers the list, as a one-shot ``syncd sync`` does).
    ``fence`` runs first in every transaction: only the calendar's lease holder writes."""
    assert source.tasks_calendar is not None
    lists = lists if lists is not None else TaskLists()
    url = lists.get(source) or session.task_list(source.tasks_calendar)
    try:
        etags = session.todo_etags(url)
    except RemoteError:
        lists.forget(source)  # deleted or moved on the server: look it up again next time
        raise
    lists.remember(source, url)
    counts = {"written": 0, "done": 0, "dismissed": 0, "erased": 0}
    counts["erased"] = _erase_forgotten(engine, source.owner, session, url, fence)
    with engine.connect() as conn:
        mine = store.vtodo_tasks(conn, source.owner)
    # Only what changed in the app since we last looked is downloaded.
    changed = [
        t["vtodo_href"] for t in mine
        if t["vtodo_href"] in etags and etags[t["vtodo_href"]] != t["vtodo_etag"]
    ]  # fmt: skip
    remote = {o.href: (o.etag, o.data) for o in session.fetch(url, changed)} if changed else {}
    with engine.begin() as conn:
        fence(conn)
        # Their events last, once: emitting takes the outbox lock (PostgreSQL) until the
        # commit, and later rows locked under it could deadlock with a follow-up pass that
        # holds those rows and waits for the lock.
        updated: list[int] = []
        for task in mine:
            href = task["vtodo_href"]
            if href is None:
                continue
            if href not in etags:  # deleted in the app
                if task["status"] in store.ACTIVE:
                    if store.set_status(
                        conn, task["id"], "dismissed", by="calendar", announce=False
                    ):
                        updated.append(task["id"])
                    counts["dismissed"] += 1
                store.vtodo_gone(conn, task["id"])
                continue
            if href not in remote:
                continue  # unchanged
            etag, data = remote[href]
            status = todo_status(data)
            if task["status"] in store.ACTIVE and status in ("COMPLETED", "CANCELLED"):
                new = "done" if status == "COMPLETED" else "dismissed"
                if store.set_status(conn, task["id"], new, by="calendar", announce=False):
                    updated.append(task["id"])
                counts[new] += 1
            store.vtodo_seen(conn, task["id"], etag)
        store.emit_tasks(conn, TASK_UPDATED, updated)
    base = urlsplit(url).path
    now = datetime.now(UTC)
    with engine.connect() as conn:
        pending = [t for t in store.vtodo_tasks(conn, source.owner) if _needs_writing(t)]
    for task in pending:
        href = task["vtodo_href"] or f"{base.rstrip('/')}/syncd-task-{task['id']}.ics"
        text = render_todo(
            task_id=task["id"], title=task["title"], due_at=task["due_at"], status=task["status"],
            customer=task["customer"], closed_at=task["closed_at"], now=now,
            priority=task.get("priority") or "normal",
        )  # fmt: skip
        etag = session.put(url, href, text)
        with engine.begin() as conn:
            fence(conn)
            store.vtodo_written(conn, task["id"], href, etag, now)
        counts["written"] += 1
    if any(counts.values()):
        log.info("tasks.calendar_synced", calendar=source.name, **counts)
    return counts


def _erase_forgotten(
    engine: Engine,
    owner: str,
    session: CalendarSession,
    url: str,
    fence: Callable[[Connection], None],
) -> int:
    """Delete from the rep's list the VTODOs of tasks about people syncd was told to forget,
    then the tasks themselves: nothing syncd pushed may keep naming them."""
    with engine.connect() as conn:
        gone = store.forgotten_vtodos(conn, owner)
    for task_id, href in gone:
        session.delete(url, href)  # a VTODO the rep already deleted answers 404: fine
        with engine.begin() as conn:
            fence(conn)
            store.drop_task(conn, task_id)
    return len(gone)


def _needs_writing(task: dict[str, object]) -> bool:
    if task["vtodo_href"] is None:
        return task["status"] in store.ACTIVE  # closed before it ever reached the calendar: skip
    synced = task["vtodo_synced_at"]
    return synced is None or task["updated_at"] > synced  # type: ignore[operator]
