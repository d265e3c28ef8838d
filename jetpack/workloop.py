"""The agent work loop's use cases, where the task queue meets mail, reservations and memory.

* claim: the task comes back with the reservation conflicts on its planned files, the unread mail
  count, and the memories most relevant to it;
* complete: one transaction marks it done, releases the agent's reservations for it (closing its
  intent) and records the files touched; then its outcome and learnings become memory;
* fail: the attempt's reason becomes memory too, and procedures that came with the task lose trust.

Memory is a help, never a gate: if the embedding model is unavailable the claim or completion still
stands, and the problem is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydantic import BaseModel

from jetpack.actor import Actor
from jetpack.errors import InvalidInput, JetpackError
from jetpack.mail.inbox import attention
from jetpack.mail.model import MailContext
from jetpack.memory.context import MemoryContext
from jetpack.memory.loop import check_learnings, memories_for_task, remember_outcome
from jetpack.memory.model import MemoryHit
from jetpack.reservations.service import (
    ConflictView,
    ReservationContext,
    find_conflicts,
    normalise_paths,
    release_for_task,
)
from jetpack.tasks import FailMode, QueueContext, Task, claim_task, complete_task, fail_task

log = logging.getLogger(__name__)


class ClaimContext(BaseModel):
    """What a claim returns besides the task."""

    conflicts: list[ConflictView] = []
    unread_mail: int = 0
    memories: list[MemoryHit] = []


def claim_for_agent(
    queue: QueueContext,
    reservations: ReservationContext,
    mail: MailContext,
    memory: MemoryContext,
    actor: Actor,
    task_id: str | None = None,
) -> tuple[Task | None, str | None, ClaimContext]:
    outcome = claim_task(queue, actor, task_id)
    if outcome.task is None:
        return None, outcome.reason, ClaimContext()
    task = outcome.task
    conflicts: list[ConflictView] = []
    if task.files:
        try:
            conflicts = find_conflicts(reservations, actor.name, normalise_paths(reservations, task.files))
        except InvalidInput:
            conflicts = []  # a planned path that is not a valid pattern cannot be checked; the claim stands
    unread, _, _ = attention(mail, actor.name, with_unread=True)
    return task, None, ClaimContext(conflicts=conflicts, unread_mail=unread, memories=_memories(memory, actor, task))


def _memories(memory: MemoryContext, actor: Actor, task: Task) -> list[MemoryHit]:
    try:
        return memories_for_task(memory, actor.name, task)
    except JetpackError:
        log.warning("no memories for %s: memory is unavailable", task.id, exc_info=True)
        return []


def complete_for_agent(
    queue: QueueContext,
    reservations: ReservationContext,
    memory: MemoryContext,
    actor: Actor,
    task_id: str,
    summary: str,
    files_touched: Sequence[str] | None = None,
    learnings: Sequence[str] | None = None,
) -> Task:
    touched = normalise_paths(reservations, files_touched) if files_touched else []
    lessons = check_learnings(learnings)
    task = complete_task(
        queue,
        actor,
        task_id,
        summary,
        files_touched=touched,
        also=lambda now: [release_for_task(actor.name, task_id, now)],
    )
    _keep(memory, actor, task, summary, lessons, failed=False)
    return task


def fail_for_agent(
    queue: QueueContext, memory: MemoryContext, actor: Actor, task_id: str, reason: str, mode: FailMode
) -> Task:
    task = fail_task(queue, actor, task_id, reason, mode)
    if mode is not FailMode.RELEASE:
        _keep(memory, actor, task, reason, [], failed=True)
    return task


def _keep(memory: MemoryContext, actor: Actor, task: Task, summary: str, learnings: list[str], *, failed: bool) -> None:
    try:
        remember_outcome(memory, actor.name, task, summary, learnings, failed=failed)
    except JetpackError:
        log.warning("the outcome of %s was not remembered: memory is unavailable", task.id, exc_info=True)
