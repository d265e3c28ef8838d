"""Memory in the work loop: what an agent should know when it claims a task, and what to keep when
it finishes one."""

from __future__ import annotations

import json
from collections.abc import Sequence

from jetpack.errors import InvalidInput
from jetpack.memory.context import MemoryContext
from jetpack.memory.learning import FAILURE_TAG, OUTCOME_TAG, adjust_for_task_result, learn_from_outcome
from jetpack.memory.model import CONTENT_MAX, Layer, MemoryHit, NewMemory
from jetpack.memory.recall import recall
from jetpack.memory.writing import remember
from jetpack.store import Statement
from jetpack.tasks import Task

LEARNINGS_MAX = 20
MIN_RELEVANCE = 0.25


def memories_for_task(ctx: MemoryContext, agent: str, task: Task) -> list[MemoryHit]:
    """The memories most relevant to a task (its title, description and files), within the budget."""
    if ctx.settings.claim_memories == 0 or not ctx.has_memories():
        return []
    query = " ".join([task.title, task.description[:600], " ".join(task.files[:20])]).strip()
    hits = recall(ctx, query[:1_900], k=ctx.settings.claim_memories, min_score=MIN_RELEVANCE, known_not_empty=True)
    chosen: list[MemoryHit] = []
    used = 0
    for hit in hits:
        if used + len(hit.snippet) > ctx.settings.claim_budget_chars and chosen:
            break
        chosen.append(hit)
        used += len(hit.snippet)
    if chosen:
        ctx.store.write(
            [
                Statement(
                    "INSERT INTO memory_uses(task_id, memory_id, agent, used_at) SELECT :task, value, :agent, :now "
                    "FROM json_each(:ids) WHERE NOT EXISTS (SELECT 1 FROM memory_uses u WHERE u.task_id = :task "
                    "AND u.memory_id = json_each.value)",
                    {"task": task.id, "agent": agent, "now": ctx.now(), "ids": json.dumps([h.id for h in chosen])},
                )
            ]
        )
    return chosen


def check_learnings(learnings: Sequence[str] | None) -> list[str]:
    items = [item.strip() for item in (learnings or []) if item.strip()]
    if len(items) > LEARNINGS_MAX:
        raise InvalidInput(f"{len(items)} learnings; pass at most {LEARNINGS_MAX}, one insight each")
    for item in items:
        if len(item) > CONTENT_MAX:
            raise InvalidInput(f"a learning is {len(item)} characters; keep each under {CONTENT_MAX}")
    return items


INFORMATIVE_WORDS = 3


def says_something(summary: str, learnings: Sequence[str], files_touched: Sequence[str]) -> bool:
    """Whether a completion is worth an episodic memory: learnings, files, or a summary of a few
    words. "done" says nothing the task's own record does not; remembering it would only crowd
    recall (and run the model on every completion for nothing)."""
    return bool(learnings or files_touched) or len(summary.split()) >= INFORMATIVE_WORDS


def outcome_text(agent: str, task: Task, summary: str, *, failed: bool) -> str:
    verb = "failed" if failed else "completed"
    text = f"Task {task.id} “{task.title}” {verb} by {agent}: {summary.strip() or 'no summary given'}"
    if task.files_touched:
        text += f" Files: {', '.join(task.files_touched[:20])}."
    return text[:CONTENT_MAX]


def remember_outcome(
    ctx: MemoryContext, agent: str, task: Task, summary: str, learnings: Sequence[str], *, failed: bool = False
) -> list[int]:
    """Keep an episodic memory of how a task ended (linked to it) and each learning; feed procedural
    learning and the confidence of the procedures the agent was given."""
    text = outcome_text(agent, task, summary, failed=failed)
    tags = [FAILURE_TAG if failed else OUTCOME_TAG, *task.labels[:5]]
    outcome = remember(
        ctx,
        agent,
        NewMemory(content=text, layer=Layer.EPISODIC, tags=tags, task_id=task.id, importance=0.6, source="task"),
    )
    ids = [outcome.id]
    for learning in learnings:
        ids.append(
            remember(
                ctx,
                agent,
                NewMemory(
                    content=learning,
                    layer=Layer.EPISODIC,
                    tags=["learning"],
                    task_id=task.id,
                    importance=0.7,
                    source="agent",
                ),
            ).id
        )
    adjust_for_task_result(ctx, task.id, succeeded=not failed)
    if not failed and not outcome.merged:
        learn_from_outcome(ctx, outcome.id)
    return ids
