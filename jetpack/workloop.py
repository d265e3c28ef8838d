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
from jetpack.memory.backlog import backlog_statement, drain_all
from jetpack.memory.context import MemoryContext
from jetpack.memory.loop import check_learnings, memories_for_task, says_something
from jetpack.memory.model import MemoryHit
from jetpack.reservations.service import (
    ConflictView,
    ReservationContext,
    find_conflicts,
    normalise_paths,
    release_for_task,
)
from jetpack.store import StoreError
from jetpack.swarm.strategies import claim_next
from jetpack.tasks import FailMode, QueueContext, Task, complete_task, fail_task

log = logging.getLogger(__name__)


class ClaimContext(BaseModel):
    """What a claim returns besides the task."""

    conflicts: list[ConflictView] = []
    unread_mail: int = 0
    attention: tuple[int, int] | None = None  # (urgent unread, awaiting ack), read with unread_mail
    memories: list[MemoryHit] = []
    also_claimed: list[Task] = []  # a batch claim's other tasks (claim_task(batch=n))


def claim_for_agent(
    queue: QueueContext,
    reservations: ReservationContext,
    mail: MailContext,
    memory: MemoryContext,
    actor: Actor,
    task_id: str | None = None,
    *,
    strategy: str | None = None,
    batch: int = 1,
) -> tuple[Task | None, str | None, ClaimContext]:
    """Claim under ``strategy`` (default: the swarm's, ``queue.swarm.strategy``; see docs/swarm.md),
    ``batch`` related tasks at most; the first task is the one the context is about."""
    outcome = claim_next(queue, actor, strategy, task_id=task_id, batch=batch)
    if outcome.task is None:
        return None, outcome.reason, ClaimContext()
    task, others = outcome.tasks[0], outcome.tasks[1:]
    conflicts: list[ConflictView] = []
    planned = [path for t in outcome.tasks for path in t.files]
    if planned:
        try:
            conflicts = find_conflicts(reservations, actor.name, normalise_paths(reservations, planned))
        except InvalidInput:
            conflicts = []  # a planned path that is not a valid pattern cannot be checked; the claim stands
    unread, urgent, ack = attention(mail, actor.name, with_unread=True)
    return (
        task,
        None,
        ClaimContext(
            conflicts=conflicts,
            unread_mail=unread,
            attention=(urgent, ack),
            memories=_memories(memory, actor, task),
            also_claimed=others,
        ),
    )


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
    informative = says_something(summary, lessons, touched)
    task = complete_task(
        queue,
        actor,
        task_id,
        summary,
        files_touched=touched,
        also=lambda now: [
            release_for_task(actor.name, task_id, now),
            backlog_statement(
                task_id,
                actor.name,
                summary,
                lessons,
                failed=False,
                now=now,
                informative=informative,
            ),
        ],
    )
    if informative or _was_given_memories(memory, task_id):  # else nothing was queued: no drain to run
        _remember_soon(memory)
    return task


def _was_given_memories(memory: MemoryContext, task_id: str) -> bool:
    return memory.has_memories() and bool(
        memory.store.query("SELECT 1 FROM memory_uses WHERE task_id = :task LIMIT 1", {"task": task_id})
    )


def fail_for_agent(
    queue: QueueContext, memory: MemoryContext, actor: Actor, task_id: str, reason: str, mode: FailMode
) -> Task:
    task = fail_task(queue, actor, task_id, reason, mode)
    if mode is not FailMode.RELEASE:
        try:
            memory.store.write([backlog_statement(task_id, actor.name, reason, [], failed=True, now=memory.now())])
        except StoreError:
            log.warning("the failure of %s was not queued for memory", task_id, exc_info=True)
        _remember_soon(memory)
    return task


def _remember_soon(memory: MemoryContext) -> None:
    """The outcome waits in the backlog: a server's worker takes it; without one, take it now."""
    if memory.on_outcome is not None:
        memory.on_outcome()
        return
    try:
        drain_all(memory)
    except (JetpackError, StoreError):
        log.warning("outcomes were not remembered yet: memory is unavailable", exc_info=True)
