"""Intents: say which files you are about to touch, tell only those it concerns, close it when done.

Also the two task use cases that mail and reservations enrich: a claim that comes back with the
reservation conflicts on the task's planned files and the unread count, and a completion that
closes the agent's reservations (its intent) for that task and records the files it touched.
"""

from __future__ import annotations

import json

from pydantic import BaseModel

from jetpack.actor import Actor
from jetpack.errors import InvalidInput, NotFound
from jetpack.mail.inbox import attention
from jetpack.mail.messages import send_mail
from jetpack.mail.model import MailContext, NewMessage, Sender
from jetpack.reservations.patterns import patterns_overlap
from jetpack.reservations.service import (
    ConflictView,
    ReservationContext,
    ReservationView,
    ReserveMode,
    find_conflicts,
    normalise_paths,
    release_for_task,
    reserve_files,
)
from jetpack.tasks import QueueContext, Task, claim_task, complete_task
from jetpack.tasks.ids import check_task_id

SUMMARY_MAX = 300


class IntentResult(BaseModel):
    task_id: str
    reservations: list[ReservationView]
    conflicts: list[ConflictView] = []
    notified: list[str] = []
    message_id: int | None = None


class ClaimContext(BaseModel):
    """What a claim returns besides the task: whom its planned files collide with, unread mail."""

    conflicts: list[ConflictView] = []
    unread_mail: int = 0


def announce_intent(
    queue: QueueContext,
    reservations: ReservationContext,
    mail: MailContext,
    actor: Actor,
    task_id: str,
    files: list[str],
    summary: str,
    ttl_seconds: int | None = None,
) -> IntentResult:
    """Reserve ``files`` for ``task_id`` (advisory) and tell the agents whose reservations or claimed
    tasks' planned files overlap them — not everyone — in the task's thread."""
    check_task_id(task_id)
    summary = summary.strip()
    if not summary or len(summary) > SUMMARY_MAX:
        raise InvalidInput(f"summary must be 1-{SUMMARY_MAX} characters saying what you will change")
    if not queue.store.query("SELECT 1 FROM tasks WHERE id = :id", {"id": task_id}):
        raise NotFound(f"no task {task_id}; an intent belongs to a task (list_tasks shows ids)")
    patterns = normalise_paths(reservations, files)
    reserved = reserve_files(
        reservations,
        actor.name,
        patterns,
        mode=ReserveMode.ADVISORY,
        ttl_seconds=ttl_seconds,
        reason=summary,
        task_id=task_id,
        intent=True,
    )
    concerned = {c.holder for c in reserved.conflicts} | _agents_planning(queue, actor, task_id, patterns)
    notified = sorted(concerned)
    message_id = None
    if notified:
        body = "Files:\n" + "\n".join(f"- `{p}`" for p in patterns)
        if reserved.conflicts:
            body += "\n\nOverlaps:\n" + "\n".join(
                f"- `{c.path}` with {c.holder}'s `{c.pattern}`" + (f" ({c.task_id})" if c.task_id else "")
                for c in reserved.conflicts
            )
        sent = send_mail(
            mail,
            Sender(actor.name),
            NewMessage(to=notified, subject=f"Intent: {summary}", body=body, kind="intent", task_id=task_id),
        )
        message_id = sent.id
    return IntentResult(
        task_id=task_id,
        reservations=reserved.reservations,
        conflicts=reserved.conflicts,
        notified=notified,
        message_id=message_id,
    )


def _agents_planning(queue: QueueContext, actor: Actor, task_id: str, patterns: list[str]) -> set[str]:
    """Agents holding other tasks whose planned files overlap ``patterns``."""
    rows = queue.store.query(
        "SELECT assignee, files FROM tasks WHERE state IN ('claimed', 'in_progress') AND assignee != :me "
        "AND id != :task AND files != '[]'",
        {"me": actor.name, "task": task_id},
    )
    return {
        row["assignee"]
        for row in rows
        if any(patterns_overlap(p, f) for f in json.loads(row["files"]) for p in patterns)
    }


def claim_with_context(
    queue: QueueContext,
    reservations: ReservationContext,
    mail: MailContext,
    actor: Actor,
    task_id: str | None = None,
) -> tuple[Task | None, str | None, ClaimContext]:
    """Claim a task and say, with it, who holds files it plans to touch and how much mail is unread."""
    outcome = claim_task(queue, actor, task_id)
    if outcome.task is None:
        return None, outcome.reason, ClaimContext()
    conflicts: list[ConflictView] = []
    if outcome.task.files:
        try:
            conflicts = find_conflicts(reservations, actor.name, normalise_paths(reservations, outcome.task.files))
        except InvalidInput:
            conflicts = []  # a planned path that is not a valid pattern cannot be checked; the claim stands
    unread, _, _ = attention(mail, actor.name, with_unread=True)
    return outcome.task, None, ClaimContext(conflicts=conflicts, unread_mail=unread)


def complete_closing_intent(
    queue: QueueContext,
    reservations: ReservationContext,
    actor: Actor,
    task_id: str,
    summary: str,
    files_touched: list[str] | None = None,
) -> Task:
    """Complete a task; in the same transaction release the agent's reservations for it (closing its
    intent) and record the files it actually touched."""
    touched = normalise_paths(reservations, files_touched) if files_touched else []
    return complete_task(
        queue,
        actor,
        task_id,
        summary,
        files_touched=touched,
        also=lambda now: [release_for_task(actor.name, task_id, now)],
    )
