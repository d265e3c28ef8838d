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
from jetpack.tasks.sql import (
    READY_T,
    RETRIED_AT,
    RETRIED_STATE,
    RetryPolicy,
    after_state_change,
    sweep_statements,
)

# A ready task is claimable by an agent holding every skill it requires (case-insensitive).
# The aliases matter: tursodb 0.6 resolves an unqualified `value` in a json_each nested in another
# unaliased json_each to the outer one.
SKILLS_OK = (
    "NOT EXISTS (SELECT 1 FROM json_each(t.skills) AS needed "
    "WHERE needed.value NOT IN (SELECT held.value FROM json_each(:skills) AS held))"
)

# A ready task held for another agent (pre-assigned by a push strategy, jetpack/swarm/holds.py) is
# theirs until the hold lapses; a claimer's own live hold is taken before anything else.
NOT_HELD = (
    "NOT EXISTS (SELECT 1 FROM task_holds h WHERE h.task_id = t.id AND h.agent != :actor AND h.expires_at > :now)"
)
_OWN_HOLD = f"""SELECT t.id FROM task_holds h JOIN tasks t ON t.id = h.task_id
    WHERE h.agent = :actor AND h.expires_at > :now AND t.state = 'ready' AND {SKILLS_OK}
    ORDER BY h.expires_at, t.id LIMIT 1"""

# The queue order: what first-fit (and claim_task without a strategy) hands out first.
QUEUE_ORDER = "t.priority, t.created_at, t.id"

_CLAIM_SET = """state = 'claimed', assignee = :actor, lease_expires_at = :lease, claimed_at = :now,
    change_kind = 'claimed', changed_by = :actor, change_note = NULL, updated_at = :now"""


class ClaimOutcome(BaseModel):
    task: Task | None = None
    reason: str | None = None


class FailMode(StrEnum):
    RETRY = "retry"  # count a failed attempt and put the task back in the queue
    GIVE_UP = "give_up"  # mark the task failed now
    RELEASE = "release"  # hand the task back without counting an attempt


def claim_statements(
    actor: Actor,
    task_id: str | None,
    now: int,
    lease_ms: int,
    retry: RetryPolicy | None = None,
    *,
    ranked: Sequence[str] | None = None,
    order: str = QUEUE_ORDER,
) -> list[Statement]:
    """The claim batch: sweep lapsed leases and finished retry waits, then claim one ready task
    (the last statement, ``RETURNING`` it): the claimer's own held task if it has one, else the
    first of ``ranked`` (a strategy's candidates, best first) still ready, or without ``ranked``
    the first ready task in ``order`` (an ORDER BY over ``t``)."""
    params = {"actor": actor.name, "skills": json.dumps(sorted(actor.skills)), "lease": now + lease_ms, "now": now}
    if task_id is None:
        if ranked is None:
            pick = f"""SELECT t.id FROM tasks t WHERE t.state = 'ready' AND {SKILLS_OK} AND {NOT_HELD}
                ORDER BY {order} LIMIT 1"""
        else:
            pick = f"""SELECT t.id FROM json_each(:ranked) AS r JOIN tasks t ON t.id = r.value
                WHERE t.state = 'ready' AND {SKILLS_OK} AND {NOT_HELD} ORDER BY r.key LIMIT 1"""
            params["ranked"] = json.dumps(list(ranked))
        claim = Statement(
            f"""UPDATE tasks SET {_CLAIM_SET}
            WHERE id = coalesce(({_OWN_HOLD}), ({pick})) AND state = 'ready'
            RETURNING *""",
            params,
        )
    else:
        claim = Statement(
            f"""UPDATE tasks AS t SET {_CLAIM_SET}
            WHERE t.id = :id AND t.state = 'ready' AND {SKILLS_OK} AND {NOT_HELD}
            RETURNING *""",
            {**params, "id": task_id},
        )
    return [*sweep_statements(now, retry), claim]


def claim_also_statement(actor: Actor, anchor: str, task_ids: Sequence[str], now: int, lease_ms: int) -> Statement:
    """Claim these ready tasks too (a batch claim), in the transaction of the claim of ``anchor``
    stamped ``now``, and only if that claim succeeded."""
    return Statement(
        f"""UPDATE tasks AS t SET {_CLAIM_SET}
        WHERE t.id IN (SELECT value FROM json_each(:ids)) AND t.state = 'ready' AND {SKILLS_OK} AND {NOT_HELD}
          AND EXISTS (SELECT 1 FROM tasks a WHERE a.id = :anchor AND a.state = 'claimed'
                      AND a.assignee = :actor AND a.claimed_at = :now)
        RETURNING *""",
        {
            "ids": json.dumps(list(task_ids)),
            "anchor": anchor,
            "actor": actor.name,
            "skills": json.dumps(sorted(actor.skills)),
            "lease": now + lease_ms,
            "now": now,
        },
    )


def claim_task(
    ctx: QueueContext,
    actor: Actor,
    task_id: str | None = None,
    *,
    ranked: Sequence[str] | None = None,
    order: str = QUEUE_ORDER,
) -> ClaimOutcome:
    """Claim ``task_id``, or the next ready task: see :func:`claim_statements` (jetpack/swarm/strategies.py
    picks ``ranked`` or ``order`` for a claim strategy)."""
    if task_id is not None:
        check_task_id(task_id)
    now = ctx.now()
    statements = claim_statements(
        actor, task_id, now, ctx.lease_ms(), RetryPolicy.of(ctx.settings), ranked=ranked, order=order
    )
    rows = ctx.store.write(statements)[-1]
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
    """Return lapsed claims to the queue (attempts + 1, after a retry wait; failed once attempts are
    used up), and make ready the tasks whose retry wait is over. Returns the lapsed claims."""
    return ctx.store.write(sweep_statements(ctx.now(), RetryPolicy.of(ctx.settings)))[0]


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
    retry_at = "NULL"
    if mode is FailMode.RELEASE:
        state, attempts, kind = f"CASE WHEN {READY_T} THEN 'ready' ELSE 'open' END", "attempts", "released"
    elif mode is FailMode.GIVE_UP:
        state, attempts, kind = "'failed'", "attempts + 1", "failed"
    else:
        state, attempts, kind, retry_at = RETRIED_STATE, "attempts + 1", "attempt_failed", RETRIED_AT
    rows = ctx.store.execute(
        f"""UPDATE tasks AS t SET state = {state}, attempts = {attempts}, retry_at = {retry_at},
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
            **RetryPolicy.of(ctx.settings).params(),
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
    if state == TaskState.BLOCKED and holder is None:
        return Conflict(f"{task_id} is blocked ({row['blocked_reason']}); unblock it first (status 'open')")
    if state == TaskState.BLOCKED and holder != actor.name:
        return NotPermitted(f"{task_id} was blocked by {holder}: {row['blocked_reason']}")
    if state == TaskState.OPEN:
        if ctx.store.query("SELECT 1 FROM tasks WHERE parent_id = :id AND state != 'cancelled'", {"id": task_id}):
            return Conflict(f"{task_id} is a parent task; it is done when all its subtasks are done")
        if row["retry_at"] is not None and row["retry_at"] > ctx.now():
            return Conflict(
                f"{task_id} failed attempt {row['attempts']} of {row['max_attempts']} and waits until "
                f"{format_ms(row['retry_at'])} before it is retried; call claim_task without task_id to get other work"
            )
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
    if state == TaskState.READY and (hold := _held_for_another(ctx, actor, task_id)) is not None:
        return Conflict(
            f"{task_id} is held for {hold['agent']} until {format_ms(hold['expires_at'])} (the {hold['strategy']} "
            "strategy assigned it); call claim_task without task_id to get another"
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


def _held_for_another(ctx: QueueContext, actor: Actor, task_id: str) -> Row | None:
    rows = ctx.store.query(
        "SELECT agent, strategy, expires_at FROM task_holds WHERE task_id = :id AND agent != :actor "
        "AND expires_at > :now",
        {"id": task_id, "actor": actor.name, "now": ctx.now()},
    )
    return rows[0] if rows else None


def _why_nothing_ready(ctx: QueueContext, actor: Actor) -> str:
    counts = {
        r["state"]: r["n"]
        for r in ctx.store.query(
            "SELECT state, count(*) AS n FROM tasks WHERE state IN ('ready', 'claimed', 'in_progress', 'open', "
            "'blocked') GROUP BY state"
        )
    }
    retrying = ctx.store.query(
        "SELECT count(*) AS n FROM tasks WHERE retry_at > :now AND state = 'open'", {"now": ctx.now()}
    )[0]["n"]
    counts["open"] = counts.get("open", 0) - retrying
    parts = []
    held_for_others = ctx.store.query(
        "SELECT count(*) AS n FROM task_holds h JOIN tasks t ON t.id = h.task_id "
        "WHERE t.state = 'ready' AND h.agent != :actor AND h.expires_at > :now",
        {"actor": actor.name, "now": ctx.now()},
    )[0]["n"]
    if held_for_others:
        parts.append(f"{held_for_others} ready task(s) held for other agents for a few seconds")
    if counts.get("ready", 0) > held_for_others:
        parts.append(f"{counts['ready'] - held_for_others} ready task(s) need skills {actor.name} lacks")
    held = counts.get("claimed", 0) + counts.get("in_progress", 0)
    if held:
        parts.append(f"{held} claimed by agents")
    if counts.get("open"):
        parts.append(f"{counts['open']} waiting on dependencies or subtasks")
    if retrying:
        parts.append(f"{retrying} waiting to be retried after a failed attempt")
    if counts.get("blocked"):
        parts.append(f"{counts['blocked']} blocked")
    if not parts:
        return "no tasks are left to do; create some with create_tasks"
    return "nothing is ready for you: " + "; ".join(parts) + ". Try again later"
