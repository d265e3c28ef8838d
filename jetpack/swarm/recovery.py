"""Recovery: what dead agents and stalled tasks leave behind goes back to the queue, exactly once.

* A **dead** agent (see :mod:`jetpack.agents.health`): every task it holds is requeued with the
  attempt counted (after a retry wait; ``failed`` once its attempts are used up), all its file
  reservations are released, and a ``handoff`` message in each task's thread says what happened.
* A **stalled** task: claimed, with neither progress on it nor a heartbeat from its holder for
  ``agents.stalled_seconds``. It is requeued the same way, with its holder's reservations for it;
  the holder (perhaps alive but hung) keeps everything else.
* A **long-running** task is past its time budget (estimate x ``agents.budget_factor``, clamped)
  while its holder is alive and beating: it is reported — a ``long_running`` event, once per
  claim — and never taken away. That is the difference from a stalled one.

Claims of people at the CLI (no heartbeat) and of names no session ever held are left to their
leases, which every sweep also returns when they lapse.

Every server runs :func:`recover` from its sweeper and ``jetpack start`` calls it between rounds, so
several may run at once. Each recovery is one batch whose every statement is guarded by what the
plan saw (the holder's session and last heartbeat, the task's claim and last change): the first
batch to commit does the work, a later one finds the guards false and writes nothing. So a task
is recovered, and its handoff posted, exactly once — and never from an agent that spoke since.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

from jetpack.agents.health import (
    HELD_SQL,
    AgentState,
    LifecycleContext,
    agent_health,
    describe_duration,
    is_cli,
    task_budget_ms,
)
from jetpack.clock import format_ms, to_datetime
from jetpack.mail.messages import message_statements, system_message_params
from jetpack.store import Row, Statement
from jetpack.tasks.model import TaskState
from jetpack.tasks.sql import RETRIED_AT, RETRIED_STATE, RetryPolicy, promote_due_retries

log = logging.getLogger(__name__)


class RecoveryCause(StrEnum):
    DEAD = "dead"  # its holder is dead
    STALLED = "stalled"  # no progress and no heartbeat for agents.stalled_seconds


class RecoveredTask(BaseModel):
    task_id: str
    agent: str
    cause: RecoveryCause
    reason: str
    state: TaskState  # open (waiting to be retried), ready, or failed (attempts used up)
    attempts: int
    retry_at: datetime | None = None
    message_id: int | None = None  # the handoff message in the task's thread


class LongRunningTask(BaseModel):
    task_id: str
    agent: str
    running_seconds: int
    budget_seconds: int
    reported: bool = False  # this run recorded its long_running event (once per claim)


class RecoveryReport(BaseModel):
    recovered: list[RecoveredTask] = []
    dead_agents: list[str] = []  # dead agents whose work or reservations this run released
    released_reservations: int = 0
    long_running: list[LongRunningTask] = []
    retries_ready: list[str] = []  # tasks whose retry wait ended, now ready


@dataclass
class _DeadAgent:
    row: Row
    reason: str
    tasks: list[Row] = field(default_factory=list)


@dataclass
class _Plan:
    dead: dict[str, _DeadAgent] = field(default_factory=dict)
    stalled: list[tuple[Row, Row, str]] = field(default_factory=list)  # task, holder, reason
    long_running: list[tuple[Row, int, int]] = field(default_factory=list)  # task, running ms, budget ms


def recover(ctx: LifecycleContext) -> RecoveryReport:
    """Requeue the work of dead agents and stalled tasks (with handoffs), release dead agents'
    reservations, report long-running tasks, and make ready the tasks whose retry wait is over."""
    now = ctx.now()
    plan = _plan(ctx, now)
    retry = RetryPolicy.of(ctx.queue.settings)
    report = RecoveryReport()
    for name, dead in plan.dead.items():
        if _recover_dead_agent(ctx, dead, now, retry, report):
            report.dead_agents.append(name)
    for task, holder, reason in plan.stalled:
        _recover_tasks(ctx, holder, [task], RecoveryCause.STALLED, reason, now, retry, report, [])
    report.long_running = _report_long_running(ctx, plan.long_running, now)
    promote = promote_due_retries(now)
    report.retries_ready = [
        r["id"] for r in ctx.queue.store.execute(promote.sql, promote.params) if r["state"] == "ready"
    ]
    for item in report.recovered:
        log.info("recovered %s from %s (%s): now %s", item.task_id, item.agent, item.reason, item.state)
    return report


# --- planning: read what is held and by whom ---------------------------------------------------------


def _plan(ctx: LifecycleContext, now: int) -> _Plan:
    store = ctx.queue.store
    held = store.query(
        f"""SELECT id, title, state, assignee, claimed_at, updated_at, lease_expires_at, estimate_minutes,
            attempts, max_attempts, created_by, progress_note
        FROM tasks WHERE state IN {HELD_SQL} ORDER BY claimed_at, id"""
    )
    reserving = [r["agent"] for r in store.query("SELECT DISTINCT agent FROM reservations WHERE released_at IS NULL")]
    names = sorted({*(t["assignee"] for t in held), *reserving})
    agents = {
        row["name"]: row
        for row in store.query(
            "SELECT * FROM agents WHERE name IN (SELECT n.value FROM json_each(:names) AS n)",
            {"names": json.dumps(names)},
        )
    }
    plan = _Plan()
    holding = {t["assignee"] for t in held}
    for name in sorted(set(reserving) - holding):  # dead agents holding only reservations
        row = agents.get(name)
        if row is not None and not is_cli(row):
            health = agent_health(row, now, ctx.settings, holds_work=False, host=ctx.host)
            if health.state is AgentState.DEAD:
                plan.dead[name] = _DeadAgent(row, health.reason or "dead")
    stalled_ms = int(ctx.settings.stalled_seconds * 1000)
    for task in held:
        holder = agents.get(task["assignee"])
        if holder is not None and not is_cli(holder):
            health = agent_health(holder, now, ctx.settings, holds_work=True, host=ctx.host)
            if health.state is AgentState.DEAD:
                plan.dead.setdefault(holder["name"], _DeadAgent(holder, health.reason or "dead")).tasks.append(task)
                continue
            quiet_ms = now - max(task["updated_at"], holder["last_seen_at"])
            if quiet_ms >= stalled_ms:
                reason = f"no progress on it and no heartbeat from {holder['name']} for {describe_duration(quiet_ms)}"
                plan.stalled.append((task, holder, reason))
                continue
        running_ms = now - (task["claimed_at"] or now)
        budget_ms = task_budget_ms(task["estimate_minutes"], ctx.settings)
        if running_ms > budget_ms:
            plan.long_running.append((task, running_ms, budget_ms))
    return plan


# --- recovering: one guarded batch per dead agent or stalled task -------------------------------------


# The holder's row is as planned: same session, no heartbeat since, same end.
_AGENT_UNCHANGED = """EXISTS (SELECT 1 FROM agents WHERE name = :agent AND session_id = :sid
        AND last_seen_at = :seen AND coalesce(ended_at, 0) = :ended)"""


# The task is as planned: held by the same claim, unchanged since.
_TASK_UNCHANGED = f"""EXISTS (SELECT 1 FROM tasks WHERE id = :task AND assignee = :agent AND state IN {HELD_SQL}
        AND claimed_at = :claimed AND updated_at = :updated)"""


def _agent_params(holder: Row) -> dict[str, object]:
    return {
        "agent": holder["name"],
        "sid": holder["session_id"],
        "seen": holder["last_seen_at"],
        "ended": holder["ended_at"] or 0,
    }


def _recover_dead_agent(
    ctx: LifecycleContext, dead: _DeadAgent, now: int, retry: RetryPolicy, report: RecoveryReport
) -> bool:
    params = {
        **_agent_params(dead.row),
        "now": now,
        "note": f"{dead.row['name']} is dead: {dead.reason}",
        "data": json.dumps({"tasks": [t["id"] for t in dead.tasks]}),
    }
    holds_anything = f"""(EXISTS (SELECT 1 FROM tasks WHERE assignee = :agent AND state IN {HELD_SQL})
        OR EXISTS (SELECT 1 FROM reservations WHERE agent = :agent AND released_at IS NULL))"""
    before = [
        Statement(
            f"""INSERT INTO events(at, actor, kind, task_id, before_state, after_state, note, data)
            SELECT :now, 'system', 'agent_dead', NULL, NULL, NULL, :note, :data
            WHERE {_AGENT_UNCHANGED} AND {holds_anything}
            RETURNING id""",
            params,
        )
    ]
    after = [
        Statement(
            f"""UPDATE reservations SET released_at = :now
            WHERE agent = :agent AND released_at IS NULL AND {_AGENT_UNCHANGED}
            RETURNING id""",
            params,
        )
    ]
    results = _recover_tasks(
        ctx,
        dead.row,
        dead.tasks,
        RecoveryCause.DEAD,
        f"{dead.row['name']} is dead: {dead.reason}",
        now,
        retry,
        report,
        before,
        after,
    )
    return bool(results[0])


def _recover_tasks(
    ctx: LifecycleContext,
    holder: Row,
    tasks: Sequence[Row],
    cause: RecoveryCause,
    reason: str,
    now: int,
    retry: RetryPolicy,
    report: RecoveryReport,
    before: list[Statement],
    after: Sequence[Statement] = (),
) -> list[list[Row]]:
    """One batch: ``before``, then per task its handoff, its reservations and its requeue, then
    ``after``. Returns the batch's results; records what happened in ``report``."""
    statements = list(before)
    for task in tasks:
        statements.extend(_requeue_statements(ctx, holder, task, cause, reason, now, retry))
    statements.extend(after)
    results = ctx.queue.store.write(statements)
    offset = len(before)
    for n, task in enumerate(tasks):
        message, _, released, requeued = results[offset + 4 * n : offset + 4 * n + 4]
        report.released_reservations += len(released)
        if requeued:
            row = requeued[0]
            report.recovered.append(
                RecoveredTask(
                    task_id=task["id"],
                    agent=holder["name"],
                    cause=cause,
                    reason=reason,
                    state=TaskState(row["state"]),
                    attempts=row["attempts"],
                    retry_at=to_datetime(row["retry_at"]),
                    message_id=message[0]["id"] if message else None,
                )
            )
    for extra in results[offset + 4 * len(tasks) :]:
        report.released_reservations += len(extra)
    return results


def _requeue_statements(
    ctx: LifecycleContext, holder: Row, task: Row, cause: RecoveryCause, reason: str, now: int, retry: RetryPolicy
) -> list[Statement]:
    """Handoff message (and its deliveries), the holder's reservations for the task, the requeue —
    each guarded: nothing happens unless the task and its holder are still as planned."""
    guard = f"{_TASK_UNCHANGED} AND {_AGENT_UNCHANGED}"
    attempt = task["attempts"] + 1
    note = f"{reason}; attempt {attempt} of {task['max_attempts']} counted"
    params = {
        **system_message_params(
            thread_id=task["id"],
            task_id=task["id"],
            subject=_subject(task, holder, cause),
            body=_handoff_body(task, holder, reason, attempt, now, retry),
            kind="handoff",
            recipients=_recipients(ctx, task),
            now=now,
        ),
        **_agent_params(holder),
        **retry.params(),
        "task": task["id"],
        "claimed": task["claimed_at"],
        "updated": task["updated_at"],
        "note": note,
    }
    return [
        *message_statements(params, only_if=guard),
        Statement(
            f"""UPDATE reservations SET released_at = :now
            WHERE agent = :agent AND task_id = :task AND released_at IS NULL AND {guard}
            RETURNING id""",
            params,
        ),
        Statement(
            f"""UPDATE tasks AS t SET attempts = t.attempts + 1, state = {RETRIED_STATE}, retry_at = {RETRIED_AT},
                closed_at = CASE WHEN t.attempts + 1 >= t.max_attempts THEN :now ELSE NULL END,
                assignee = NULL, lease_expires_at = NULL, change_kind = 'recovered', changed_by = 'system',
                change_note = :note, updated_at = :now
            WHERE t.id = :task AND {guard}
            RETURNING id, state, attempts, retry_at""",
            params,
        ),
    ]


def _recipients(ctx: LifecycleContext, task: Row) -> list[str]:
    """The holder (should it come back), whoever created the task, and everyone who wrote in its thread."""
    wrote = ctx.queue.store.query(
        "SELECT DISTINCT sender FROM messages WHERE thread_id = :task AND sender_kind != 'system' ORDER BY sender",
        {"task": task["id"]},
    )
    names = [task["assignee"], task["created_by"], *(r["sender"] for r in wrote)]
    return list(dict.fromkeys(n for n in names if n and n != "system"))


def _subject(task: Row, holder: Row, cause: RecoveryCause) -> str:
    why = f"{holder['name']} is dead" if cause is RecoveryCause.DEAD else f"stalled under {holder['name']}"
    return f"Handoff: {task['id']} is back in the queue ({why})"


def _handoff_body(task: Row, holder: Row, reason: str, attempt: int, now: int, retry: RetryPolicy) -> str:
    if attempt >= task["max_attempts"]:
        outcome = f"That was attempt {attempt} of {task['max_attempts']}: the task is now **failed**."
    elif retry.base_ms > 0:
        outcome = (
            f"Attempt {attempt} of {task['max_attempts']} was counted; the task is claimable again after "
            f"{format_ms(now + retry.wait_ms(attempt))} (retry wait)."
        )
    else:
        outcome = f"Attempt {attempt} of {task['max_attempts']} was counted; the task is back in the queue."
    lines = [
        f"{holder['name']} claimed {task['id']} ({task['title']!r}) at {format_ms(task['claimed_at'])} and "
        f"left it {task['state']}: {reason}.",
        "",
        f"Jetpack released the claim and {holder['name']}'s reservations for it. {outcome}",
    ]
    if task["progress_note"]:
        lines += ["", f"Last progress note: {task['progress_note']}"]
    lines += [
        "",
        f"Whoever takes it next: look for work {holder['name']} left in the tree (uncommitted changes, "
        "a branch, a worktree) before starting over.",
    ]
    return "\n".join(lines)


# --- reporting long-running tasks ----------------------------------------------------------------------


def _report_long_running(ctx: LifecycleContext, found: list[tuple[Row, int, int]], now: int) -> list[LongRunningTask]:
    if not found:
        return []
    statements = [
        Statement(
            f"""INSERT INTO events(at, actor, kind, task_id, before_state, after_state, note)
            SELECT :now, 'system', 'long_running', t.id, t.state, t.state, :note FROM tasks t
            WHERE t.id = :task AND t.state IN {HELD_SQL} AND t.claimed_at = :claimed
              AND NOT EXISTS (SELECT 1 FROM events e WHERE e.task_id = t.id AND e.kind = 'long_running'
                              AND e.at >= t.claimed_at)
            RETURNING id""",
            {
                "now": now,
                "task": task["id"],
                "claimed": task["claimed_at"],
                "note": f"running for {describe_duration(running)}, past its time budget of "
                f"{describe_duration(budget)}; {task['assignee']} is alive, so it keeps the task",
            },
        )
        for task, running, budget in found
    ]
    results = ctx.queue.store.write(statements)
    return [
        LongRunningTask(
            task_id=task["id"],
            agent=task["assignee"],
            running_seconds=running // 1000,
            budget_seconds=budget // 1000,
            reported=bool(inserted),
        )
        for (task, running, budget), inserted in zip(found, results, strict=True)
    ]
