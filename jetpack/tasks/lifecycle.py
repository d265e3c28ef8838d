"""Changes to a task besides claiming: progress, blocking, priority, cancelling, reopening."""

from __future__ import annotations

import json
from enum import StrEnum

from jetpack.actor import Actor
from jetpack.errors import Conflict, InvalidInput, NotPermitted
from jetpack.store import GuardFailed, Row, Statement, expect
from jetpack.tasks.claims import HELD, _not_holder
from jetpack.tasks.context import QueueContext
from jetpack.tasks.graph import Overlay, describe_cycle, find_cycle, graph_unchanged_since, read_graph_version
from jetpack.tasks.ids import ancestors_of, check_task_id
from jetpack.tasks.model import NOTE_MAX, Task, TaskState
from jetpack.tasks.rows import task_from_row
from jetpack.tasks.sql import READY_T, after_state_change, ready_condition, refresh_readiness


class StatusChange(StrEnum):
    IN_PROGRESS = "in_progress"  # holder: work has started (renews the lease)
    BLOCKED = "blocked"  # holder, or anyone for an unclaimed leaf: waits on something outside (reason required)
    OPEN = "open"  # anyone: unblock a blocked task; it returns to the queue
    CANCELLED = "cancelled"  # not needed any more (with its unfinished subtasks)


def update_task(
    ctx: QueueContext,
    actor: Actor,
    task_id: str,
    *,
    status: StatusChange | None = None,
    note: str | None = None,
    priority: int | None = None,
) -> Task:
    check_task_id(task_id)
    if note is not None and len(note) > NOTE_MAX:
        raise InvalidInput(f"note is {len(note)} characters; keep it under {NOTE_MAX}")
    if priority is not None and not 0 <= priority <= 4:
        raise InvalidInput(f"priority must be 0 (highest) to 4 (lowest), not {priority}")
    if status is None and note is None and priority is None:
        raise InvalidInput("nothing to update: pass status, note or priority")
    if status is StatusChange.CANCELLED and priority is not None:
        raise InvalidInput("a cancelled task keeps its priority; change the priority in a separate call")
    if status is StatusChange.CANCELLED:
        task = cancel_task(ctx, actor, task_id, note or "cancelled")
    elif status is StatusChange.OPEN:
        task = _unblock(ctx, actor, task_id, note)
    elif status is not None or note is not None:
        task = _report_progress(ctx, actor, task_id, status, note)
    else:
        task = ctx_task(ctx, task_id)
    if priority is not None:
        task = _reprioritise(ctx, actor, task_id, priority)
    return task


def ctx_task(ctx: QueueContext, task_id: str) -> Task:
    return task_from_row(ctx.require_row(task_id))


def _report_progress(
    ctx: QueueContext, actor: Actor, task_id: str, status: StatusChange | None, note: str | None
) -> Task:
    now = ctx.now()
    if status is StatusChange.BLOCKED and not (note and note.strip()):
        raise InvalidInput("blocking a task needs a note saying what it waits for")
    new_state = {None: "state", StatusChange.IN_PROGRESS: "'in_progress'", StatusChange.BLOCKED: "'blocked'"}[status]
    kind = {None: "progress", StatusChange.IN_PROGRESS: "started", StatusChange.BLOCKED: "blocked"}[status]
    params = {
        "id": task_id,
        "actor": actor.name,
        "note": note,
        "kind": kind,
        "now": now,
        "lease": None if status is StatusChange.BLOCKED else now + ctx.lease_ms(),
    }
    update = Statement(
        f"""UPDATE tasks SET state = {new_state}, progress_note = coalesce(:note, progress_note),
            blocked_reason = CASE WHEN {new_state} = 'blocked' THEN :note ELSE blocked_reason END,
            lease_expires_at = :lease, change_kind = :kind, changed_by = :actor, change_note = :note,
            updated_at = :now
        WHERE id = :id AND state IN ('claimed', 'in_progress') AND assignee = :actor
        RETURNING *""",
        params,
    )
    # A note without a state change leaves no trace through the state trigger: log it here,
    # under the same guard as the update, evaluated just before it in the same transaction.
    log_note = Statement(
        f"""INSERT INTO events(at, actor, kind, task_id, before_state, after_state, note)
        SELECT :now, :actor, 'progress', id, state, state, :note FROM tasks
        WHERE id = :id AND state IN ('claimed', 'in_progress') AND assignee = :actor
          AND {new_state} = state AND :note IS NOT NULL""",
        params,
    )
    rows = ctx.store.write([log_note, update])[1]
    if rows:
        return task_from_row(rows[0])
    if status is StatusChange.BLOCKED and (blocked := _block_unclaimed(ctx, actor, task_id, note, now)):
        return blocked
    raise _not_holder(ctx, actor, ctx.require_row(task_id), "update")


def _block_unclaimed(ctx: QueueContext, actor: Actor, task_id: str, note: str | None, now: int) -> Task | None:
    """Hold back an unclaimed leaf (open or ready) until someone unblocks it: anyone may, with a
    reason. A claimed task is blocked only by its holder (the caller gets that refusal)."""
    rows = ctx.store.execute(
        """UPDATE tasks SET state = 'blocked', blocked_reason = :note, change_kind = 'blocked',
            changed_by = :actor, change_note = :note, updated_at = :now
        WHERE id = :id AND state IN ('open', 'ready')
          AND NOT EXISTS (SELECT 1 FROM tasks c WHERE c.parent_id = :id AND c.state != 'cancelled')
        RETURNING *""",
        {"id": task_id, "actor": actor.name, "note": note, "now": now},
    )
    return task_from_row(rows[0]) if rows else None


def _unblock(ctx: QueueContext, actor: Actor, task_id: str, note: str | None) -> Task:
    now = ctx.now()
    rows = ctx.store.execute(
        f"""UPDATE tasks AS t SET state = CASE WHEN {READY_T} THEN 'ready' ELSE 'open' END,
            assignee = NULL, blocked_reason = NULL, change_kind = 'unblocked', changed_by = :actor,
            change_note = :note, updated_at = :now
        WHERE t.id = :id AND t.state = 'blocked'
        RETURNING *""",
        {"id": task_id, "actor": actor.name, "note": note, "now": now},
    )
    if rows:
        return task_from_row(rows[0])
    row = ctx.require_row(task_id)
    raise Conflict(f"{task_id} is {row['state']}, not blocked; only blocked tasks can be set back to open")


def _reprioritise(ctx: QueueContext, actor: Actor, task_id: str, priority: int) -> Task:
    now = ctx.now()
    params = {"id": task_id, "p": priority, "actor": actor.name, "now": now}
    results = ctx.store.write(
        [
            Statement(
                """INSERT INTO events(at, actor, kind, task_id, before_state, after_state, note)
                SELECT :now, :actor, 'reprioritised', id, state, state,
                       'priority ' || priority || ' -> ' || :p
                FROM tasks WHERE id = :id AND priority != :p AND state NOT IN ('done', 'failed', 'cancelled')""",
                params,
            ),
            Statement(
                "UPDATE tasks SET priority = :p, updated_at = :now WHERE id = :id "
                "AND state NOT IN ('done', 'failed', 'cancelled') RETURNING *",
                params,
            ),
        ]
    )
    if results[1]:
        return task_from_row(results[1][0])
    row = ctx.require_row(task_id)
    raise Conflict(f"{task_id} is {row['state']}; finished tasks keep their priority")


def cancel_task(ctx: QueueContext, actor: Actor, task_id: str, reason: str) -> Task:
    """Cancel a task and its unfinished subtasks. Work held by other agents is never cancelled
    from under them: the call is refused and names the holders."""
    check_task_id(task_id)
    now = ctx.now()
    subtree = "SELECT task_id FROM task_ancestors WHERE ancestor_id = :id"
    params = {
        "id": task_id,
        "actor": actor.name,
        "operator": actor.operator,
        "note": reason[:NOTE_MAX],
        "now": now,
    }
    ancestors = ancestors_of(task_id)
    try:
        results = ctx.store.write(
            [
                expect(
                    f"NOT EXISTS (SELECT 1 FROM tasks WHERE id IN ({subtree}) AND state IN "
                    "('claimed', 'in_progress', 'blocked') AND assignee != :actor AND NOT :operator)",
                    params,
                ),
                Statement(
                    f"""UPDATE tasks SET state = 'cancelled', closed_at = :now, lease_expires_at = NULL,
                        change_kind = 'cancelled', changed_by = :actor, change_note = :note, updated_at = :now
                    WHERE id IN ({subtree}) AND state NOT IN ('done', 'failed', 'cancelled')
                    RETURNING id""",
                    params,
                ),
                *after_state_change([], ancestors, actor.name, now),
                *refresh_readiness(
                    "SELECT value FROM json_each(:changed)",
                    {"changed": json.dumps(ancestors)},
                    actor.name,
                    now,
                ),
            ]
        )
    except GuardFailed:
        holders = ctx.store.query(
            f"SELECT id, assignee FROM tasks WHERE id IN ({subtree}) AND state IN ('claimed', 'in_progress', "
            "'blocked') AND assignee != :actor",
            params,
        )
        held = ", ".join(f"{h['id']} ({h['assignee']})" for h in holders)
        raise NotPermitted(f"cannot cancel {task_id}: other agents hold {held}; ask them to release first") from None
    if not results[1]:
        row = ctx.require_row(task_id)
        if row["state"] == TaskState.CANCELLED:
            return task_from_row(row)
        raise Conflict(f"{task_id} is {row['state']}; only unfinished tasks can be cancelled")
    return ctx_task(ctx, task_id)


def reopen_task(ctx: QueueContext, actor: Actor, task_id: str, reason: str | None = None) -> Task:
    """Bring a done, failed or cancelled leaf back to the queue (attempts start again).

    A cancelled subtask rejoins its parent, so the parent must still accept subtasks (as in
    create_tasks) and the rejoined edge must not close a cycle; a parent that had become a leaf
    turns back into a parent (its claim, if any, ends)."""
    check_task_id(task_id)
    for _ in range(_ATTEMPTS):
        row = ctx.require_row(task_id)
        _check_reopenable(ctx, row)
        now = ctx.now()
        rejoin = _rejoin_parent(ctx, actor, row, now) if row["state"] == TaskState.CANCELLED else []
        unchanged = expect(
            "EXISTS (SELECT 1 FROM tasks t WHERE t.id = :id AND t.state = :state AND t.updated_at = :updated)",
            {"id": task_id, "state": row["state"], "updated": row["updated_at"]},
        )
        try:
            results = ctx.store.write(
                [
                    unchanged,
                    *rejoin,
                    Statement(
                        f"""UPDATE tasks AS t SET state = CASE WHEN {_READY_AFRESH} THEN 'ready' ELSE 'open' END,
                            attempts = 0, retry_at = NULL, closed_at = NULL, assignee = NULL, lease_expires_at = NULL,
                            change_kind = 'reopened', changed_by = :actor, change_note = :note, updated_at = :now
                        WHERE t.id = :id
                        RETURNING *""",
                        {"id": task_id, "actor": actor.name, "note": reason, "now": now},
                    ),
                    *after_state_change([task_id], ancestors_of(task_id), actor.name, now),
                ]
            )
        except GuardFailed:
            continue  # the task, its parent or the graph changed since we looked: look again
        return task_from_row(results[1 + len(rejoin)][0])
    raise Conflict(f"{task_id} kept changing while being reopened; try again")


def _check_reopenable(ctx: QueueContext, row: Row) -> None:
    task_id, state = row["id"], row["state"]
    if state in HELD:
        raise Conflict(f"{task_id} is {state} by {row['assignee']}; it is not finished")
    if state not in (TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED):
        raise Conflict(f"{task_id} is {state}; only done, failed or cancelled tasks can be reopened")
    if ctx.store.query("SELECT 1 FROM tasks WHERE parent_id = :id AND state != 'cancelled'", {"id": task_id}):
        raise Conflict(f"{task_id} is a parent task; reopen one of its subtasks instead")


_ATTEMPTS = 5
# A reopened task starts its attempts afresh: no retry wait holds it back.
_READY_AFRESH = ready_condition("t.id")


def _rejoin_parent(ctx: QueueContext, actor: Actor, row: Row, now: int) -> list[Statement]:
    """Checks and statements for a cancelled subtask becoming a live child of its parent again."""
    parent_id = row["parent_id"]
    if parent_id is None:
        return []
    parent = ctx.require_row(parent_id)
    state, holder = parent["state"], parent["assignee"]
    if state in HELD and holder != actor.name and not actor.operator:
        raise NotPermitted(f"{row['id']} belongs to {parent_id}, which {holder} holds; ask them to release it first")
    if state not in (TaskState.OPEN, TaskState.READY, TaskState.DONE, *HELD):
        raise Conflict(f"{row['id']} belongs to {parent_id}, which is {state}; reopen or unblock {parent_id} first")
    overlay = Overlay()
    overlay.add_child(parent_id, row["id"])
    version = read_graph_version(ctx.store)
    cycle = find_cycle(ctx.store, overlay)
    if cycle is not None:
        raise InvalidInput(f"reopening {row['id']} would close the cycle {describe_cycle(cycle)}; remove a link first")
    params = {"p": parent_id, "state": state, "holder": holder or "", "actor": actor.name, "now": now}
    return [
        expect(
            "EXISTS (SELECT 1 FROM tasks WHERE id = :p AND state = :state AND coalesce(assignee, '') = :holder)", params
        ),
        *graph_unchanged_since(version),
        Statement(
            """UPDATE tasks SET state = 'open', assignee = NULL, lease_expires_at = NULL, closed_at = NULL,
                change_kind = 'split', changed_by = :actor, change_note = 'a subtask was reopened', updated_at = :now
            WHERE id = :p AND state IN ('ready', 'claimed', 'in_progress', 'done')""",
            params,
        ),
    ]
