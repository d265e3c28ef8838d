"""SQL shared by the task services: the readiness rule and the statements that keep it true.

Readiness is materialised in ``tasks.state`` ('ready' vs 'open') and every write that can
change it appends these set-based statements to its own batch, so the ready queue is always
an index lookup and is never stale, whichever entrypoint made the change.

The rule: a task is ready when it is open, has no live (non-cancelled) children, every
``blocks`` dependency of the task *and of each of its ancestors* is done, and its retry wait (if
a failed attempt left one) is over. Inheriting the ancestors' blockers is what makes "epic B
depends on epic A" hold back B's leaves.

Time is the one input that changes without a write: a task whose retry wait ends is made ready
by :func:`promote_due_retries`, which runs before every claim and in every server's sweep.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from jetpack.config import TaskSettings
from jetpack.store import Statement


def ready_condition(task: str) -> str:
    """SQL true when the task whose id is the SQL expression ``task`` satisfies the readiness rule."""
    return f"""NOT EXISTS (SELECT 1 FROM tasks c WHERE c.parent_id = {task} AND c.state != 'cancelled')
    AND NOT EXISTS (
        SELECT 1 FROM task_ancestors a
        JOIN dependencies d ON d.task_id = a.ancestor_id AND d.kind = 'blocks'
        LEFT JOIN tasks b ON b.id = d.depends_on
        WHERE a.task_id = {task} AND (b.state IS NULL OR b.state != 'done'))"""


# The whole rule for the task ``t``, in statements that bind :now: dependencies and the retry wait.
READY_T = ready_condition("t.id") + " AND (t.retry_at IS NULL OR t.retry_at <= :now)"


@dataclass(frozen=True)
class RetryPolicy:
    """How long a task waits after its n-th failed attempt: base x 2^(n-1), at most cap (0: no wait)."""

    base_ms: int = 30_000
    cap_ms: int = 900_000

    @classmethod
    def of(cls, settings: TaskSettings) -> RetryPolicy:
        return cls(int(settings.retry_backoff_seconds * 1000), int(settings.retry_backoff_max_seconds * 1000))

    def wait_ms(self, attempt: int) -> int:
        return min(self.base_ms * (1 << min(attempt - 1, 20)), self.cap_ms)

    def params(self) -> dict[str, int]:
        return {"retry_base": self.base_ms, "retry_cap": self.cap_ms}


# For an UPDATE of a held task ``t`` whose attempt failed (binding :now and RetryPolicy.params()):
# failed once its attempts are used up, else back to the queue after its wait. Both read the
# attempts *before* the update, as every expression of one UPDATE does.
RETRIED_STATE = f"""CASE WHEN t.attempts + 1 >= t.max_attempts THEN 'failed'
    WHEN :retry_base > 0 THEN 'open' WHEN {READY_T} THEN 'ready' ELSE 'open' END"""
RETRIED_AT = """CASE WHEN t.attempts + 1 >= t.max_attempts OR :retry_base <= 0 THEN NULL
    ELSE :now + min(:retry_base * (1 << min(t.attempts, 20)), :retry_cap) END"""

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


def expire_leases(now: int, retry: RetryPolicy | None = None) -> Statement:
    """Return every lapsed claim to the queue after its retry wait (or fail it once its attempts
    are used up)."""
    return Statement(
        f"""UPDATE tasks AS t SET
            attempts = attempts + 1,
            state = {RETRIED_STATE},
            retry_at = {RETRIED_AT},
            closed_at = CASE WHEN attempts + 1 >= max_attempts THEN :now ELSE NULL END,
            change_note = 'lease of ' || coalesce(assignee, '?') || ' expired',
            assignee = NULL, lease_expires_at = NULL, change_kind = 'lease_expired',
            changed_by = 'system', updated_at = :now
        WHERE state IN ('claimed', 'in_progress') AND lease_expires_at < :now
        RETURNING id, state""",
        {"now": now, **(retry or RetryPolicy()).params()},
    )


_RETRY_DUE = f"t.state = 'open' AND {ready_condition('t.id')}"


def promote_due_retries(now: int) -> Statement:
    """Make ready the tasks whose retry wait is over (and forget every wait that has passed).
    Only tasks with a retry_at are read, through their small partial index."""
    return Statement(
        f"""UPDATE tasks AS t SET
            state = CASE WHEN {_RETRY_DUE} THEN 'ready' ELSE t.state END,
            change_kind = CASE WHEN {_RETRY_DUE} THEN 'unblocked' ELSE t.change_kind END,
            changed_by = CASE WHEN {_RETRY_DUE} THEN 'system' ELSE t.changed_by END,
            change_note = CASE WHEN {_RETRY_DUE} THEN 'retry wait over' ELSE t.change_note END,
            updated_at = CASE WHEN {_RETRY_DUE} THEN :now ELSE t.updated_at END,
            retry_at = NULL
        WHERE t.retry_at <= :now
        RETURNING id, state""",
        {"now": now},
    )


def sweep_statements(now: int, retry: RetryPolicy | None = None) -> list[Statement]:
    """What runs before every claim: lapsed leases back to the queue, finished retry waits made ready."""
    return [expire_leases(now, retry), promote_due_retries(now)]
