"""Intents: say which files you are about to touch, tell only those it concerns, close it when done."""

from __future__ import annotations

import json

from pydantic import BaseModel

from jetpack.actor import Actor
from jetpack.errors import InvalidInput, NotFound
from jetpack.mail.messages import send_mail
from jetpack.mail.model import MailContext, NewMessage, Sender
from jetpack.reservations.patterns import patterns_overlap
from jetpack.reservations.service import (
    ConflictView,
    ReservationContext,
    ReservationView,
    ReserveMode,
    normalise_paths,
    reserve_files,
)
from jetpack.tasks import QueueContext
from jetpack.tasks.ids import check_task_id

SUMMARY_MAX = 300


class IntentResult(BaseModel):
    task_id: str
    reservations: list[ReservationView]
    conflicts: list[ConflictView] = []
    notified: list[str] = []
    message_id: int | None = None


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
