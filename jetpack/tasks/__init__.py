"""The task queue: hierarchical tasks, a dependency DAG, and atomic leased claims.

Each public function is one use case and takes a :class:`QueueContext` first.
"""

from jetpack.tasks.claims import (
    ClaimOutcome,
    FailMode,
    claim_task,
    complete_task,
    fail_task,
    release_expired_leases,
    renew_claim,
    renew_leases,
)
from jetpack.tasks.context import QueueContext
from jetpack.tasks.creation import CreatedTask, create_tasks
from jetpack.tasks.dependencies import add_dependency
from jetpack.tasks.lifecycle import StatusChange, cancel_task, reopen_task, update_task
from jetpack.tasks.model import DependencyKind, NewTask, Task, TaskDetail, TaskState, TaskSummary
from jetpack.tasks.queries import TaskPage, count_by_state, get_task, list_tasks, ready_tasks

__all__ = [
    "ClaimOutcome",
    "CreatedTask",
    "DependencyKind",
    "FailMode",
    "NewTask",
    "QueueContext",
    "StatusChange",
    "Task",
    "TaskDetail",
    "TaskPage",
    "TaskState",
    "TaskSummary",
    "add_dependency",
    "cancel_task",
    "claim_task",
    "complete_task",
    "count_by_state",
    "create_tasks",
    "fail_task",
    "get_task",
    "list_tasks",
    "ready_tasks",
    "release_expired_leases",
    "renew_claim",
    "renew_leases",
    "reopen_task",
    "update_task",
]
