"""/tasks: list, add, and change a task's status, snooze, priority or due time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from sqlalchemy import select, update
from starlette.responses import Response

from syncd.api import paging
from syncd.api.context import Caller, Reader, Writer, address, json, page, utc
from syncd.api.models import Id, Page, Task, TaskIn, TaskPatch, TaskType
from syncd.api.problems import Problem
from syncd.api.routes import PREFIX
from syncd.cli.present.tasks import task_json
from syncd.schema.tables import tasks as tasks_table
from syncd.store import audit
from syncd.store import tasks as store
from syncd.store.directory import find_customer
from syncd.store.errors import NotFound
from syncd.store.events import TASK_UPDATED

router = APIRouter(prefix=PREFIX, tags=["tasks"])


def _task(conn: Any, caller: Caller, task_id: Id) -> dict[str, Any]:
    found = store.list_tasks(conn, ids=[task_id])
    if not found or (caller.token.rep and found[0]["owner"] != caller.token.rep):
        raise NotFound("task", task_id)
    return found[0]


@router.get("/tasks", response_model=Page[Task], summary="Tasks, soonest due first")
def list_tasks(
    caller: Reader,
    owner: Annotated[str | None, Query(max_length=320)] = None,
    status: Literal["open", "done", "dismissed", "snoozed"] | None = None,
    type: TaskType | None = None,
    customer: Annotated[str | None, Query(max_length=300)] = None,
    due_before: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=paging.MAX_LIMIT)] = paging.DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    who = address(owner, "query.owner") if owner else None
    if caller.token.rep:
        if who is not None and who != caller.token.rep:
            return page([], None)
        who = caller.token.rep
    with caller.read() as conn:
        customer_id = find_customer(conn, customer).id if customer else None
        rows = store.list_tasks(
            conn, owner=who, status=status, due_before=utc(due_before),
            customer_id=customer_id, type_=type,
        )  # fmt: skip
    items, next_cursor = paging.page_of(
        [task_json(row) for row in rows],
        lambda t: [datetime.fromisoformat(t["due_at"]).astimezone(UTC).isoformat(), t["id"]],
        limit,
        cursor,
    )
    return page(items, next_cursor)


@router.post("/tasks", response_model=Task, status_code=201, summary="Add a task")
def create_task(caller: Writer, body: TaskIn) -> Response:
    owner = address(body.owner, "body.owner")
    if caller.token.rep and owner != caller.token.rep:
        raise Problem(403, f"this token adds tasks for {caller.token.rep} only")
    if not body.title.strip():
        raise Problem(422, "body.title: the title is empty", kind="validation",
                      extra={"errors": [{"field": "body.title", "message": "empty"}]})  # fmt: skip
    due_at = utc(body.due_at)
    assert due_at is not None
    with caller.write() as conn:
        customer = find_customer(conn, body.customer)
        # Type and priority in the insert: the task.created event carries the row as written.
        task_id = store.add_task(
            conn, title=body.title.strip(), owner=owner, customer_id=customer.id, due_at=due_at,
            type_=body.type, priority=body.priority,
        )  # fmt: skip
        audit.record(conn, "task-add", f"task {task_id}", customer_id=customer.id, owner=owner)
        shown = task_json(_task(conn, caller, task_id))
    return json(shown, 201)


@router.patch(
    "/tasks/{task_id}", response_model=Task, summary="Close, reopen, snooze or change a task"
)
def patch_task(caller: Writer, task_id: Id, body: TaskPatch) -> Response:
    given = body.model_dump(exclude_unset=True)
    if body.status is not None and body.snoozed_until is not None:
        raise Problem(422, "give status or snoozed_until, not both", kind="validation",
                      extra={"errors": [{"field": "body.snoozed_until", "message": "with status"}]})  # fmt: skip
    with caller.write() as conn:
        _task(conn, caller, task_id)
        changed = False
        if body.status is not None:
            changed |= store.set_status(conn, task_id, body.status, announce=False)
        elif "snoozed_until" in given:
            if body.snoozed_until is None:
                changed |= store.set_status(conn, task_id, "open", announce=False)
            else:
                until = utc(body.snoozed_until)
                changed |= store.set_status(conn, task_id, "snoozed", until=until, announce=False)
        values: dict[str, Any] = {}
        if body.priority is not None:
            values["priority"] = body.priority
        if body.due_at is not None:
            values["due_at"] = utc(body.due_at)
        if values:
            before = conn.execute(
                select(tasks_table.c.priority, tasks_table.c.due_at).where(
                    tasks_table.c.id == task_id
                )
            ).one()
            conn.execute(
                update(tasks_table)
                .where(tasks_table.c.id == task_id)
                .values(**values, updated_at=datetime.now(UTC))
            )
            changed |= any(getattr(before, key) != value for key, value in values.items())
        if changed:
            audit.record(conn, "task-update", f"task {task_id}",
                         **{k: v for k, v in given.items() if v is not None})  # fmt: skip
            store.emit_tasks(conn, TASK_UPDATED, [task_id])
        shown = task_json(_task(conn, caller, task_id))
    return json(shown)
