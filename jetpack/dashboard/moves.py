"""Board moves: a card dropped on a column becomes the service call a person would make at the CLI,
under the same rules the MCP tools enforce. A move the rules refuse raises the service's error,
whose message the board shows while the card snaps back.

    blocked              ← open, ready (anyone, with a reason); claimed, in_progress (only the holder)
    ready / open         ← blocked (unblock); claimed, in_progress (release the claim: an operator
                           action, confirmed on the page); done, failed, cancelled (reopen)
    cancelled            ← any unfinished state (with a reason; refused while others hold subtasks)
    claimed, in_progress, done, failed
                         ← refused: agents claim, finish and fail work through their own tools
"""

from __future__ import annotations

from dataclasses import replace

from jetpack import tasks as task_queue
from jetpack.actor import Actor
from jetpack.errors import Conflict, InvalidInput, NotPermitted
from jetpack.memory.context import MemoryContext
from jetpack.tasks import QueueContext, StatusChange, Task, TaskState
from jetpack.tasks.ids import check_task_id
from jetpack.tasks.model import NOTE_MAX

FINISHED = frozenset({TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED})
HELD = frozenset({TaskState.CLAIMED, TaskState.IN_PROGRESS})
WAITING = frozenset({TaskState.OPEN, TaskState.READY})

_AGENTS_ONLY = {
    TaskState.CLAIMED: "only an agent claims work (claim_task); the board cannot claim for one",
    TaskState.IN_PROGRESS: "only the agent holding a task starts it (update_task with status in_progress)",
    TaskState.DONE: "only the agent holding a task completes it (complete_task, with a summary of the work)",
    TaskState.FAILED: "only the agent holding a task fails it (fail_task); to stop the work, cancel the task",
}


def parse_state(value: object) -> TaskState:
    try:
        return TaskState(str(value))
    except ValueError:
        names = ", ".join(s.value for s in TaskState)
        raise InvalidInput(f"'to' must be one of {names}, not {value!r}") from None


def move_task(
    queue: QueueContext, memory: MemoryContext, actor: Actor, task_id: str, to: TaskState, reason: str | None
) -> Task:
    """Move ``task_id`` to the column ``to`` (see the module docstring for what each move means)."""
    check_task_id(task_id)
    reason = (reason or "").strip() or None
    if reason is not None and len(reason) > NOTE_MAX:
        raise InvalidInput(f"the reason is {len(reason)} characters; keep it under {NOTE_MAX}")
    current = TaskState(queue.require_row(task_id)["state"])
    if to in _AGENTS_ONLY:
        raise NotPermitted(f"cannot move {task_id} to {to.value}: {_AGENTS_ONLY[to]}")
    if to == current or (to in WAITING and current in WAITING):
        raise Conflict(
            f"{task_id} is already {current.value}"
            + (" (whether it is ready or waiting follows from its dependencies)" if to in WAITING else "")
        )
    if to is TaskState.BLOCKED:
        if reason is None:
            raise InvalidInput(f"blocking {task_id} needs a reason: say what it waits for")
        return task_queue.update_task(queue, actor, task_id, status=StatusChange.BLOCKED, note=reason)
    if to is TaskState.CANCELLED:
        if reason is None:
            raise InvalidInput(f"cancelling {task_id} needs a reason: say why it is no longer needed")
        return task_queue.cancel_task(queue, actor, task_id, reason)
    # to ready or open: back into the queue
    if current is TaskState.BLOCKED:
        return task_queue.update_task(queue, actor, task_id, status=StatusChange.OPEN, note=reason)
    if current in HELD:
        from jetpack import workloop

        operator = replace(actor, operator=True)
        why = reason or f"claim released from the dashboard by {actor.name}"
        return workloop.fail_for_agent(queue, memory, operator, task_id, why, task_queue.FailMode.RELEASE)
    return task_queue.reopen_task(queue, actor, task_id, reason)


def reprioritise(queue: QueueContext, actor: Actor, task_id: str, priority: object) -> Task:
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise InvalidInput(f"priority must be a whole number from 0 (highest) to 4 (lowest), not {priority!r}")
    return task_queue.update_task(queue, actor, task_id, priority=priority)
