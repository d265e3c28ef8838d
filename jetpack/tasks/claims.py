"""Claims are leases: claim, complete, fail or release, renew, and the sweep of lapsed leases.

Every write here is one atomic batch whose first statement sweeps lapsed leases and whose
decisive statement is a guarded ``UPDATE … RETURNING``: an empty result means the guard did
not hold, and only then do we read the row again to explain why to the caller.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from enum import StrEnum

from pydantic import BaseModel

from jetpack.actor import Actor
from jetpack.clock import format_ms
from jetpack.errors import Conflict, InvalidInput, NotPermitted
from jetpack.store import Row, Statement
from jetpack.tasks.context import QueueContext
from jetpack.tasks.ids import ancestors_of, check_task_id
from jetpack.tasks.model import NOTE_MAX, TEXT_MAX, Task, TaskState
from jetpack.tasks.rows import task_from_row, waiting_on
from jetpack.tasks.sql import READY_T, after_state_change, expire_leases

# A ready task is claimable by an agent holding every skill it requires (case-insensitive).
SKILLS_OK = "NOT EXISTS (SELECT 1 FROM json_each(t.skills) WHERE value NOT IN (SELECT value FROM json_each(:skills)))"

_CLAIM_SET = """state = 'claimed', assignee = :actor, lease_expires_at = :lease, claimed_at = :now,
    change_kind = 'claimed', changed_by = :actor, change_note = NULL, updated_at = :now"""


class ClaimOutcome(BaseModel):
    task: Task | None = None
    reason: str | None = None


class FailMode(StrEnum):
    RETRY = "retry"  # count a failed attempt and put the task back in the queue
    GIVE_UP = "give_up"  # mark the task failed now
    RELEASE = "release"  # hand the task back without counting an attempt


def claim_statements(actor: Actor, task_id: str | None, now: int, lease_ms: int) -> list[Statement]:
    """The claim batch: sweep lapsed leases, then claim one ready task (``RETURNING`` it)."""
    params = {"actor": actor.name, "skills": json.dumps(sorted(actor.skills)), "lease": now + lease_ms, "now": now}
    if task_id is None:
        claim = Statement(
            f"""UPDATE tasks SET {_CLAIM_SET}
            WHERE id = (SELECT t.id FROM tasks t WHERE t.state = 'ready' AND {SKILLS_OK}
                        ORDER BY t.priority, t.created_at, t.id LIMIT 1)
              AND state = 'ready'
            RETURNING *""",
            params,
        )
    else:
        claim = Statement(
            f"""UPDATE tasks AS t SET {_CLAIM_SET}
            WHERE t.id = :id AND t.state = 'ready' AND {SKILLS_OK}
            RETURNING *""",
            {**params, "id": task_id},
        )
    return [expire_leases(now), claim]


def claim_task(ctx: QueueContext, actor: Actor, task_id: str | None = None) -> ClaimOutcome:
    if task_id is not None:
        check_task_id(task_id)
    now = ctx.now()
    rows = ctx.store.write(claim_statements(actor, task_id, now, ctx.lease_ms()))[1]
    if rows:
        return ClaimOutcome(task=task_from_row(rows[0]))
    if task_id is None:
        return ClaimOutcome(reason=_why_nothing_ready(ctx, actor))
    row = ctx.require_row(task_id)
    if row["assignee"] == actor.name and row["state"] in HELD:
        return ClaimOutcome(task=renew_claim(ctx, actor, task_id))  # claiming twice is harmless
    raise _claim_refusal(ctx, actor, row)


HELD = (TaskState.CLAIMED.value, TaskState.IN_PROGRESS.value)


def renew_claim(ctx: QueueContext, actor: Actor, task_id: str) -> Task:
    now = ctx.now()
    rows = ctx.store.execute(
        "UPDATE tasks SET lease_expires_at = :lease WHERE id = :id AND assignee = :actor "
        "AND state IN ('claimed', 'in_progress') RETURNING *",
        {"id": task_id, "actor": actor.name, "lease": now + ctx.lease_ms()},
    )
    if not rows:
        raise _not_holder(ctx, actor, ctx.require_row(task_id), "renew")
    return task_from_row(rows[0])


def renew_leases(ctx: QueueContext, actor: Actor) -> int:
    """Extend every lease the actor holds (any call of a holder keeps its claims alive)."""
    now = ctx.now()
    rows = ctx.store.execute(
        "UPDATE tasks SET lease_expires_at = :lease WHERE assignee = :actor "
        "AND state IN ('claimed', 'in_progress') RETURNING id",
        {"actor": actor.name, "lease": now + ctx.lease_ms()},
    )
    return len(rows)


def release_expired_leases(ctx: QueueContext) -> list[Row]:
    """Return lapsed claims to the queue (attempts + 1; failed once attempts are used up)."""
    sweep = expire_leases(ctx.now())
    return ctx.store.execute(sweep.sql, sweep.params)


def complete_statements(
    actor: Actor, task_id: str, summary: str, now: int, files_touched: Sequence[str] = ()
) -> list[Statement]:
    """The completion batch: mark the holder's task done (``RETURNING`` it), roll up its parents,
    and make ready whatever waited on it — one transaction, whatever the entrypoint."""
    allowed = (
        "('claimed', 'in_progress', 'ready', 'open', 'blocked')" if actor.operator else "('claimed', 'in_progress')"
    )
    done = Statement(
        f"""UPDATE tasks AS t SET state = 'done', result_summary = :summary, closed_at = :now,
            files_touched = :touched, lease_expires_at = NULL, assignee = coalesce(assignee, :actor),
            change_kind = 'completed', changed_by = :actor, change_note = :note, updated_at = :now
        WHERE t.id = :id AND t.state IN {allowed} AND (t.assignee = :actor OR :operator)
          AND NOT EXISTS (SELECT 1 FROM tasks c WHERE c.parent_id = t.id AND c.state != 'cancelled')
        RETURNING *""",
        {
            "id": task_id,
            "actor": actor.name,
            "operator": actor.operator,
            "summary": summary,
            "note": summary[:NOTE_MAX] or None,
            "touched": json.dumps(list(files_touched)),
            "now": now,
        },
    )
    return [done, *after_state_change([task_id], ancestors_of(task_id), actor.name, now)]


def complete_task(
    ctx: QueueContext,
    actor: Actor,
    task_id: str,
    summary: str,
    *,
    files_touched: Sequence[str] = (),
    also: Callable[[int], Sequence[Statement]] | None = None,
) -> Task:
    """Complete the caller's claim. ``also(now)`` adds statements to the same transaction (e.g. closing
    reservations); each must itself check that this completion, stamped ``now``, happened."""
    check_task_id(task_id)
    if len(summary) > TEXT_MAX:
        raise InvalidInput(f"summary is {len(summary)} characters; keep it under {TEXT_MAX}")
    now = ctx.now()
    extra = list(also(now)) if also else []
    results = ctx.store.write([*complete_statements(actor, task_id, summary, now, files_touched), *extra])
    if results[0]:
        return task_from_row(results[0][0])
    row = ctx.require_row(task_id)
    if row["state"] == TaskState.DONE and row["assignee"] == actor.name:
        return task_from_row(row)  # completing twice is harmless
    raise _not_holder(ctx, actor, row, "complete")


def fail_task(ctx: QueueContext, actor: Actor, task_id: str, reason: str, mode: FailMode) -> Task:
    check_task_id(task_id)
    if not reason.strip():
        raise InvalidInput("reason is empty; say what went wrong so the next agent can do better")
    if len(reason) > NOTE_MAX:
        raise InvalidInput(f"reason is {len(reason)} characters; keep it under {NOTE_MAX}")
    now = ctx.now()
    requeue = f"CASE WHEN {READY_T} THEN 'ready' ELSE 'open' END"
    if mode is FailMode.RELEASE:
        state, attempts, kind = requeue, "attempts", "released"
    elif mode is FailMode.GIVE_UP:
        state, attempts, kind = "'failed'", "attempts + 1", "failed"
    else:
        state = f"CASE WHEN attempts + 1 >= max_attempts THEN 'failed' ELSE {requeue} END"
        attempts, kind = "attempts + 1", "attempt_failed"
    rows = ctx.store.execute(
        f"""UPDATE tasks AS t SET state = {state}, attempts = {attempts},
            closed_at = CASE WHEN ({state}) = 'failed' THEN :now ELSE NULL END,
            assignee = CASE WHEN ({state}) = 'failed' THEN assignee ELSE NULL END,
            lease_expires_at = NULL, change_kind = :kind, changed_by = :actor, change_note = :reason,
            updated_at = :now
        WHERE t.id = :id AND t.state IN ('claimed', 'in_progress', 'blocked')
          AND (t.assignee = :actor OR :operator)
        RETURNING *""",
        {
            "id": task_id,
            "actor": actor.name,
            "operator": actor.operator,
            "reason": reason,
            "kind": kind,
            "now": now,
        },
    )
    if rows:
        return task_from_row(rows[0])
    raise _not_holder(ctx, actor, ctx.require_row(task_id), "fail or release")


def _not_holder(ctx: QueueContext, actor: Actor, row: Row, verb: str) -> Exception:
    task_id, state, holder = row["id"], row["state"], row["assignee"]
    if state in HELD and holder != actor.name:
        return NotPermitted(
            f"{task_id} is claimed by {holder} (lease until {format_ms(row['lease_expires_at'])}); only {holder} "
            f"can {verb} it. Call claim_task without task_id to get other work"
        )
    if state == TaskState.READY:
        return Conflict(f"{task_id} is ready but not claimed by you; call claim_task(task_id='{task_id}') first")
    if state == TaskState.BLOCKED and holder != actor.name:
        return NotPermitted(f"{task_id} was blocked by {holder}: {row['blocked_reason']}")
    if state == TaskState.OPEN:
        if ctx.store.query("SELECT 1 FROM tasks WHERE parent_id = :id AND state != 'cancelled'", {"id": task_id}):
            return Conflict(f"{task_id} is a parent task; it is done when all its subtasks are done")
        return Conflict(f"{task_id} is not claimable yet: {_waiting_text(ctx, task_id)}")
    return Conflict(f"{task_id} is {state}; nothing to {verb}. Call claim_task to get other work")


def _waiting_text(ctx: QueueContext, task_id: str) -> str:
    waits = waiting_on(ctx.store, task_id)
    if not waits:
        return "it is waiting on its subtasks"
    shown = ", ".join(f"{w['id']} ({w['state']})" for w in waits[:5])
    more = f" and {len(waits) - 5} more" if len(waits) > 5 else ""
    return f"it waits on {shown}{more}"


def _claim_refusal(ctx: QueueContext, actor: Actor, row: Row) -> Exception:
    task_id, state = row["id"], row["state"]
    if state in HELD:
        return Conflict(
            f"{task_id} is claimed by {row['assignee']} until {format_ms(row['lease_expires_at'])}; "
            "call claim_task without task_id to get another"
        )
    if state == TaskState.READY:
        needed = set(json.loads(row["skills"])) - actor.skills
        return NotPermitted(
            f"{task_id} requires skills {sorted(needed)} that {actor.name} lacks "
            f"(has {sorted(actor.skills) or 'none'}); call register_agent with those skills, "
            "or claim_task without task_id to get work you can do"
        )
    if state == TaskState.OPEN:
        leaves = ctx.store.query(
            "SELECT t.id FROM task_ancestors a JOIN tasks t ON t.id = a.task_id "
            "WHERE a.ancestor_id = :id AND t.state = 'ready' ORDER BY t.priority, t.created_at LIMIT 5",
            {"id": task_id},
        )
        if ctx.store.query("SELECT 1 FROM tasks WHERE parent_id = :id AND state != 'cancelled'", {"id": task_id}):
            hint = (
                f"claim one of its ready subtasks: {', '.join(r['id'] for r in leaves)}"
                if leaves
                else ("none of its subtasks is ready yet")
            )
            return Conflict(f"{task_id} is a parent task and cannot be claimed; {hint}")
    return _not_holder(ctx, actor, row, "claim")


def _why_nothing_ready(ctx: QueueContext, actor: Actor) -> str:
    counts = {
        r["state"]: r["n"]
        for r in ctx.store.query(
            "SELECT state, count(*) AS n FROM tasks WHERE state IN ('ready', 'claimed', 'in_progress', 'open', "
            "'blocked') GROUP BY state"
        )
    }
    parts = []
    if counts.get("ready"):
        parts.append(f"{counts['ready']} ready task(s) need skills {actor.name} lacks")
    held = counts.get("claimed", 0) + counts.get("in_progress", 0)
    if held:
        parts.append(f"{held} claimed by agents")
    if counts.get("open"):
        parts.append(f"{counts['open']} waiting on dependencies or subtasks")
    if counts.get("blocked"):
        parts.append(f"{counts['blocked']} blocked")
    if not parts:
        return "no tasks are left to do; create some with create_tasks"
    return "nothing is ready for you: " + "; ".join(parts) + ". Try again later"
