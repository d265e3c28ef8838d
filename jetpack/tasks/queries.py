"""Read-side services: one task in detail, filtered pages of tasks, the ready queue, counts."""

from __future__ import annotations

import base64
import json
from typing import Any

from pydantic import BaseModel

from jetpack.clock import to_datetime
from jetpack.errors import InvalidInput
from jetpack.store import Row
from jetpack.tasks.context import QueueContext
from jetpack.tasks.ids import check_task_id
from jetpack.tasks.model import (
    AttemptError,
    DependencyKind,
    DependencyLink,
    Progress,
    TaskDetail,
    TaskEvent,
    TaskState,
    TaskSummary,
)
from jetpack.tasks.rows import SUMMARY_COLUMNS, summary_from_row, task_from_row, waiting_on

MAX_PAGE = 200
# The events that end a counted attempt (fail_task retry or give_up, a lapsed lease, recovery).
ATTEMPT_ENDINGS = "'attempt_failed', 'failed', 'lease_expired', 'recovered'"
UNFINISHED = [TaskState.OPEN, TaskState.READY, TaskState.CLAIMED, TaskState.IN_PROGRESS, TaskState.BLOCKED]


class TaskPage(BaseModel):
    tasks: list[TaskSummary]
    next_cursor: str | None = None


def get_task(ctx: QueueContext, task_id: str, *, events: int = 10) -> TaskDetail:
    row = ctx.require_row(task_id)
    links = ctx.store.query(
        """SELECT d.task_id, d.depends_on, d.kind, t.id AS other, t.state, t.title
        FROM dependencies d JOIN tasks t ON t.id = CASE WHEN d.task_id = :id THEN d.depends_on ELSE d.task_id END
        WHERE d.task_id = :id OR d.depends_on = :id ORDER BY t.id""",
        {"id": task_id},
    )

    def link(r: Row) -> DependencyLink:
        return DependencyLink(
            id=r["other"], kind=DependencyKind(r["kind"]), state=TaskState(r["state"]), title=r["title"]
        )

    children = ctx.store.query(
        f"SELECT {SUMMARY_COLUMNS} FROM tasks WHERE parent_id = :id ORDER BY id LIMIT 100", {"id": task_id}
    )
    progress = None
    if children:
        counts = ctx.store.query(
            "SELECT count(*) AS total, sum(state = 'done') AS done FROM tasks "
            "WHERE parent_id = :id AND state != 'cancelled'",
            {"id": task_id},
        )[0]
        progress = Progress(done=counts["done"] or 0, total=counts["total"])
    recent = ctx.store.query(
        "SELECT * FROM events WHERE task_id = :id ORDER BY id DESC LIMIT :n", {"id": task_id, "n": events}
    )
    failures = ctx.store.query(
        f"""SELECT at, actor, kind, note FROM events WHERE task_id = :id AND kind IN ({ATTEMPT_ENDINGS})
          AND id > coalesce((SELECT max(id) FROM events WHERE task_id = :id AND kind = 'reopened'), 0)
        ORDER BY id LIMIT 100""",
        {"id": task_id},
    )
    return TaskDetail(
        task=task_from_row(row),
        depends_on=[link(r) for r in links if r["task_id"] == task_id],
        dependents=[link(r) for r in links if r["depends_on"] == task_id],
        waiting_on=[w["id"] for w in waiting_on(ctx.store, task_id)],
        children=[summary_from_row(c) for c in children],
        progress=progress,
        errors=[
            AttemptError(attempt=n, at=to_datetime(f["at"]), actor=f["actor"], kind=f["kind"], error=f["note"])
            for n, f in enumerate(failures, start=1)
        ],
        recent_events=[event_from_row(e) for e in reversed(recent)],
    )


def event_from_row(row: Row) -> TaskEvent:
    return TaskEvent(
        id=row["id"],
        at=to_datetime(row["at"]),
        actor=row["actor"],
        kind=row["kind"],
        task_id=row["task_id"],
        before=row["before_state"],
        after=row["after_state"],
        note=row["note"],
    )


def list_tasks(
    ctx: QueueContext,
    *,
    states: list[TaskState] | None = None,
    parent: str | None = None,
    assignee: str | None = None,
    label: str | None = None,
    skill: str | None = None,
    text: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> TaskPage:
    """Tasks in claim order (priority, then age). Unfinished tasks unless ``states`` says otherwise."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}, not {limit}")
    where = ["state IN (SELECT value FROM json_each(:states))"]
    params: dict[str, Any] = {
        "states": json.dumps([s.value for s in (states or UNFINISHED)]),
        "limit": limit + 1,
    }
    if parent is not None:
        where.append("parent_id = :parent")
        params["parent"] = check_task_id(parent)
    if assignee is not None:
        where.append("assignee = :assignee")
        params["assignee"] = assignee
    if label is not None:
        where.append("EXISTS (SELECT 1 FROM json_each(labels) WHERE value = :label)")
        params["label"] = label.lower()
    if skill is not None:
        where.append("EXISTS (SELECT 1 FROM json_each(skills) WHERE value = :skill)")
        params["skill"] = skill.lower()
    if text:
        where.append("instr(lower(title), :text) > 0")
        params["text"] = text.lower()
    if cursor is not None:
        priority, created_at, last_id = _decode_cursor(cursor)
        where.append("(priority, created_at, id) > (:c_priority, :c_created, :c_id)")
        params.update(c_priority=priority, c_created=created_at, c_id=last_id)
    rows = ctx.store.query(
        f"SELECT {SUMMARY_COLUMNS}, created_at FROM tasks WHERE {' AND '.join(where)} "
        "ORDER BY priority, created_at, id LIMIT :limit",
        params,
    )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = _encode_cursor(last["priority"], last["created_at"], last["id"])
    return TaskPage(tasks=[summary_from_row(r) for r in rows], next_cursor=next_cursor)


def ready_tasks(ctx: QueueContext, *, limit: int = 20, cursor: str | None = None) -> TaskPage:
    """The ready queue in the order claim_task hands it out."""
    return list_tasks(ctx, states=[TaskState.READY], limit=limit, cursor=cursor)


def count_by_state(ctx: QueueContext) -> dict[str, int]:
    rows = ctx.store.query("SELECT state, count(*) AS n FROM tasks GROUP BY state")
    counts = {state.value: 0 for state in TaskState}
    counts.update({r["state"]: r["n"] for r in rows})
    return counts


def _encode_cursor(priority: int, created_at: int, task_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([priority, created_at, task_id]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[int, int, str]:
    try:
        priority, created_at, task_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return int(priority), int(created_at), str(task_id)
    except (ValueError, TypeError):
        raise InvalidInput("cursor is not one this server handed out; omit it to start from the first page") from None
