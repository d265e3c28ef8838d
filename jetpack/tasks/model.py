"""The task model: states, dependency kinds, the Task record and the shape of a new task.

These pydantic models are the boundary shapes shared by every entrypoint: MCP tools take
``NewTask`` as their parameter type (so agents see its schema), the CLI builds the same
model from flags, and services return ``Task`` objects that both serialise the same way.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jetpack.errors import InvalidInput


class TaskState(StrEnum):
    OPEN = "open"  # waiting: has live children or an unfinished blocker
    READY = "ready"  # a leaf whose blockers are all done: claimable
    CLAIMED = "claimed"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    BLOCKED = "blocked"  # declared by an agent, with a reason; unblocked by update_task(status='open')


HELD_STATES = (TaskState.CLAIMED, TaskState.IN_PROGRESS)
FINAL_STATES = (TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED)


class DependencyKind(StrEnum):
    BLOCKS = "blocks"  # hard: the dependant is not ready until this is done
    RELATED = "related"  # soft link, informational
    DISCOVERED_FROM = "discovered-from"  # soft link: found while working on the other task


TITLE_MAX = 500
TEXT_MAX = 50_000
NOTE_MAX = 10_000
NAME_MAX = 64
LIST_MAX = 50
FILES_MAX = 500
PATH_MAX = 1024
METADATA_MAX = 16_384

Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+#/-]*$")]


def normalise_names(values: list[str]) -> list[str]:
    """Lower-case, de-duplicated, order kept: skills and labels compare case-insensitively."""
    seen: dict[str, None] = {}
    for value in values:
        seen.setdefault(value.strip().lower(), None)
    return list(seen)


class NewTask(BaseModel):
    """A task to create. Children nest; ``ref`` names a task so others in the same batch can point at it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: Annotated[str, Field(min_length=1, max_length=TITLE_MAX, description="Short imperative title.")]
    description: Annotated[str, Field(max_length=TEXT_MAX, description="What to do and why (markdown).")] = ""
    acceptance: Annotated[str, Field(max_length=TEXT_MAX, description="How to know it is done.")] = ""
    priority: Annotated[int, Field(ge=0, le=4, description="0 highest … 4 lowest.")] = 2
    parent: Annotated[
        str | None, Field(max_length=200, description="Parent: an existing task id or a ref in this batch.")
    ] = None
    depends_on: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=200)]],
        Field(max_length=LIST_MAX, description="Tasks (ids or refs) that must be done before this one."),
    ] = []
    skills: Annotated[list[Name], Field(max_length=LIST_MAX, description="Skills a claimer must hold.")] = []
    files: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=PATH_MAX)]],
        Field(max_length=FILES_MAX, description="Planned files: repo-relative paths or globs."),
    ] = []
    labels: Annotated[list[Name], Field(max_length=LIST_MAX)] = []
    estimate_minutes: Annotated[int | None, Field(ge=0, le=100_000)] = None
    max_attempts: Annotated[int | None, Field(ge=1, le=100, description="Default from config (3).")] = None
    metadata: Annotated[dict[str, Any], Field(description="Free-form JSON object.")] = {}
    ref: Annotated[
        str | None,
        Field(min_length=1, max_length=64, description="Local name for this task within the batch."),
    ] = None
    children: Annotated[list[NewTask], Field(max_length=1000)] = []

    @field_validator("skills", "labels")
    @classmethod
    def _lowercase(cls, values: list[str]) -> list[str]:
        return normalise_names(values)

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value)) > METADATA_MAX:
            raise ValueError(f"metadata must serialise to at most {METADATA_MAX} bytes of JSON")
        return value


def parse_new_tasks(raw: list[dict[str, Any]]) -> list[NewTask]:
    """Validate plain dicts (from the CLI or a file) into NewTask, with a readable error."""
    try:
        return [NewTask.model_validate(item) for item in raw]
    except ValidationError as error:
        raise InvalidInput(describe_validation_error(error)) from None


def describe_validation_error(error: ValidationError, subject: str = "task") -> str:
    parts = []
    for issue in error.errors()[:5]:
        where = ".".join(str(p) for p in issue["loc"]) or "input"
        parts.append(f"{where}: {issue['msg']}")
    more = f" (and {error.error_count() - 5} more)" if error.error_count() > 5 else ""
    return f"invalid {subject}: " + "; ".join(parts) + more


class Task(BaseModel):
    """A task as stored. Times are UTC."""

    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    state: TaskState
    priority: int
    parent_id: str | None = None
    description: str = ""
    acceptance: str = ""
    skills: list[str] = []
    files: list[str] = []
    labels: list[str] = []
    metadata: dict[str, Any] = {}
    estimate_minutes: int | None = None
    created_by: str
    assignee: str | None = None
    lease_expires_at: datetime | None = None
    attempts: int = 0
    max_attempts: int
    retry_at: datetime | None = None  # after a failed attempt: not ready again before this time
    blocked_reason: str | None = None
    progress_note: str | None = None
    result_summary: str | None = None
    files_touched: list[str] = []
    created_at: datetime
    updated_at: datetime
    claimed_at: datetime | None = None
    closed_at: datetime | None = None


class TaskSummary(BaseModel):
    """One compact row of a task list."""

    id: str
    title: str
    state: TaskState
    priority: int
    assignee: str | None = None
    parent_id: str | None = None
    skills: list[str] = []
    blocked_reason: str | None = None


class DependencyLink(BaseModel):
    id: str
    kind: DependencyKind
    state: TaskState
    title: str


class TaskEvent(BaseModel):
    id: int
    at: datetime
    actor: str
    kind: str
    task_id: str | None = None
    before: str | None = None
    after: str | None = None
    note: str | None = None


class AttemptError(BaseModel):
    """How a counted attempt ended: failed by its holder, its lease lapsed, or its holder died or stalled."""

    attempt: int
    at: datetime
    actor: str
    kind: str
    error: str | None = None


class Progress(BaseModel):
    done: int
    total: int


class TaskDetail(BaseModel):
    """A task with its neighbourhood: what it waits on, what waits on it, its children and history."""

    task: Task
    depends_on: list[DependencyLink] = []
    dependents: list[DependencyLink] = []
    waiting_on: list[str] = Field(
        default=[], description="Unfinished blockers, including those inherited from ancestors."
    )
    children: list[TaskSummary] = []
    progress: Progress | None = None
    errors: list[AttemptError] = Field(
        default=[], description="Every failed attempt since the task was created or reopened, oldest first."
    )
    recent_events: list[TaskEvent] = []


def compact(model: BaseModel) -> dict[str, Any]:
    """JSON-ready dict of the fields that carry information: required fields always, optional ones
    only when they differ from their default (agents pay for every token they read)."""
    return model.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
