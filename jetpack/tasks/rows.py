"""Turning stored rows into Task models, and small reads shared by several services."""

from __future__ import annotations

import json
from typing import Any

from jetpack.clock import to_datetime
from jetpack.store import DataLayer, Row
from jetpack.tasks.model import Task, TaskState, TaskSummary

SUMMARY_COLUMNS = "id, title, state, priority, assignee, parent_id, skills, blocked_reason"


def task_from_row(row: Row) -> Task:
    data: dict[str, Any] = {k: row[k] for k in Task.model_fields if k in row}
    for key in ("skills", "files", "labels", "metadata", "files_touched"):
        data[key] = json.loads(row[key])
    for key in ("created_at", "updated_at", "claimed_at", "closed_at", "lease_expires_at", "retry_at"):
        data[key] = to_datetime(row[key])
    data["state"] = TaskState(row["state"])
    return Task.model_construct(**data)  # rows were validated on the way in; skip re-validation


def summary_from_row(row: Row) -> TaskSummary:
    return TaskSummary(
        id=row["id"],
        title=row["title"],
        state=TaskState(row["state"]),
        priority=row["priority"],
        assignee=row["assignee"],
        parent_id=row["parent_id"],
        skills=json.loads(row["skills"]),
        blocked_reason=row["blocked_reason"],
    )


def waiting_on(store: DataLayer, task_id: str) -> list[Row]:
    """Unfinished blockers of a task, its own and those inherited from its ancestors."""
    return store.query(
        """SELECT DISTINCT d.depends_on AS id, coalesce(b.state, 'missing') AS state
        FROM task_ancestors a
        JOIN dependencies d ON d.task_id = a.ancestor_id AND d.kind = 'blocks'
        LEFT JOIN tasks b ON b.id = d.depends_on
        WHERE a.task_id = :id AND (b.state IS NULL OR b.state != 'done')
        ORDER BY d.depends_on""",
        {"id": task_id},
    )
