"""SQL shared by the task services: the readiness rule and the statements that keep it true.

Readiness is materialised in ``tasks.state`` ('ready' vs 'open') and every write that can
change it appends these set-based statements to its own batch, so the ready queue is always
an index lookup and is never stale, whichever entrypoint made the change.

The rule: a task is ready when it is open, has no live (non-cancelled) children, and every
``blocks`` dependency of the task *and of each of its ancestors* is done. Inheriting the
ancestors' blockers is what makes "epic B depends on epic A" hold back B's leaves.
"""

from __future__ import annotations

import json

from jetpack.store import Statement


def ready_condition(task: str) -> str:
    """SQL true when the task whose id is the SQL expression ``task`` satisfies the readiness rule."""
    return f"""NOT EXISTS (SELECT 1 FROM tasks c WHERE c.parent_id = {task} AND c.state != 'cancelled')
    AND NOT EXISTS (
        SELECT 1 FROM task_ancestors a
        JOIN dependencies d ON d.task_id = a.ancestor_id AND d.kind = 'blocks'
        LEFT JOIN tasks b ON b.id = d.depends_on
        WHERE a.task_id = {task} AND (b.state IS NULL OR b.state != 'done'))"""


READY_T = ready_condition("t.id")

# (A unary + on a column, as in `+t.state`, keeps SQLite from driving a statement by an index on
# that column: these statements must start from the few candidate ids, not from every open task.)

# Tasks whose readiness depends on the state of the tasks in the JSON array :changed —
# the dependants of those tasks, and every descendant of a dependant.
AFFECTED_BY_CHANGED = """SELECT a.task_id FROM dependencies d
    JOIN task_ancestors a ON a.ancestor_id = d.task_id
    WHERE d.kind = 'blocks' AND d.depends_on IN (SELECT value FROM json_each(:changed))"""

# Tasks whose own ancestry includes one of the tasks in :changed (they inherit its blockers).
DESCENDANTS_OF_CHANGED = (
    "SELECT task_id FROM task_ancestors WHERE ancestor_id IN (SELECT value FROM json_each(:changed))"
)


def refresh_readiness(candidates_sql: str, params: dict[str, object], actor: str, now: int) -> list[Statement]:
    """Promote open→ready and demote ready→open among the candidate tasks, per the rule."""
    wanted = f"CASE WHEN {READY_T} THEN 'ready' ELSE 'open' END"
    return [
        Statement(
            f"""UPDATE tasks AS t SET state = {wanted},
                change_kind = CASE t.state WHEN 'open' THEN 'unblocked' ELSE 'waiting' END,
                changed_by = :actor, change_note = NULL, updated_at = :now
            WHERE +t.state IN ('open', 'ready') AND t.id IN ({candidates_sql}) AND t.state != {wanted}""",
            {**params, "actor": actor, "now": now},
        )
    ]


def roll_up_parents(ancestors: list[str], actor: str, now: int) -> list[Statement]:
    """Mark each ancestor done (nearest first) once all its live children are done."""
    return [
        Statement(
            """UPDATE tasks SET state = 'done', closed_at = :now, change_kind = 'children_done',
                changed_by = :actor, change_note = NULL, updated_at = :now
            WHERE id = :id AND state = 'open'
              AND EXISTS (SELECT 1 FROM tasks c WHERE c.parent_id = :id AND c.state = 'done')
              AND NOT EXISTS (SELECT 1 FROM tasks c WHERE c.parent_id = :id
                              AND c.state NOT IN ('done', 'cancelled'))""",
            {"id": ancestor, "actor": actor, "now": now},
        )
        for ancestor in ancestors
    ]


def reopen_parents(ancestors: list[str], actor: str, now: int) -> list[Statement]:
    """Undo a roll-up: a done ancestor with an unfinished live child is open again."""
    return [
        Statement(
            """UPDATE tasks SET state = 'open', closed_at = NULL, assignee = NULL, lease_expires_at = NULL,
                change_kind = 'reopened', changed_by = :actor, change_note = 'a child was reopened',
                updated_at = :now
            WHERE id = :id AND state = 'done'
              AND EXISTS (SELECT 1 FROM tasks c WHERE c.parent_id = :id
                          AND c.state NOT IN ('done', 'cancelled'))""",
            {"id": ancestor, "actor": actor, "now": now},
        )
        for ancestor in ancestors
    ]


def after_state_change(changed: list[str], ancestors: list[str], actor: str, now: int) -> list[Statement]:
    """Everything that must follow a change of state of ``changed``: parent roll-ups, then
    readiness of every task that depends on one of them or on a rolled-up ancestor."""
    touched = json.dumps([*changed, *ancestors])
    return [
        *roll_up_parents(ancestors, actor, now),
        *reopen_parents(ancestors, actor, now),
        *refresh_readiness(AFFECTED_BY_CHANGED, {"changed": touched}, actor, now),
    ]


def expire_leases(now: int) -> Statement:
    """Return every lapsed claim to the queue (or fail it once its attempts are used up)."""
    return Statement(
        f"""UPDATE tasks AS t SET
            attempts = attempts + 1,
            state = CASE WHEN attempts + 1 >= max_attempts THEN 'failed'
                         WHEN {READY_T} THEN 'ready' ELSE 'open' END,
            closed_at = CASE WHEN attempts + 1 >= max_attempts THEN :now ELSE NULL END,
            change_note = 'lease of ' || coalesce(assignee, '?') || ' expired',
            assignee = NULL, lease_expires_at = NULL, change_kind = 'lease_expired',
            changed_by = 'system', updated_at = :now
        WHERE state IN ('claimed', 'in_progress') AND lease_expires_at < :now
        RETURNING id, state""",
        {"now": now},
    )
