"""add_dependency: a new edge in the task graph, refused when it would close a cycle."""

from __future__ import annotations

import json

from jetpack.actor import Actor
from jetpack.errors import Conflict, InvalidInput, NotFound
from jetpack.store import GuardFailed, Statement
from jetpack.tasks.context import QueueContext
from jetpack.tasks.graph import Overlay, describe_cycle, find_cycle, graph_unchanged_since, read_graph_version
from jetpack.tasks.ids import check_task_id
from jetpack.tasks.model import DependencyKind
from jetpack.tasks.sql import DESCENDANTS_OF_CHANGED, refresh_readiness

_ATTEMPTS = 5


def add_dependency(
    ctx: QueueContext,
    actor: Actor,
    task_id: str,
    depends_on: str,
    kind: DependencyKind = DependencyKind.BLOCKS,
) -> dict[str, str]:
    """Make ``task_id`` depend on ``depends_on``. Adding an existing edge again changes nothing."""
    check_task_id(task_id)
    check_task_id(depends_on)
    if task_id == depends_on:
        raise InvalidInput(f"{task_id} cannot depend on itself")
    found = ctx.rows_by_id([task_id, depends_on], "id")
    missing = [t for t in (task_id, depends_on) if t not in found]
    if missing:
        raise NotFound(f"no task {', '.join(missing)}; call list_tasks to see existing ids")
    existing = ctx.store.query(
        "SELECT kind FROM dependencies WHERE task_id = :t AND depends_on = :d",
        {"t": task_id, "d": depends_on},
    )
    if existing:
        if existing[0]["kind"] == kind:
            return {
                "task_id": task_id,
                "depends_on": depends_on,
                "kind": kind.value,
                "result": "already present",
            }
        raise Conflict(
            f"{task_id} already depends on {depends_on} as {existing[0]['kind']!r}; one link per pair of tasks"
        )
    now = ctx.now()
    params = {"t": task_id, "d": depends_on, "kind": kind.value, "actor": actor.name, "now": now}
    insert = Statement(
        "INSERT INTO dependencies(task_id, depends_on, kind, created_by, created_at) "
        "VALUES (:t, :d, :kind, :actor, :now)",
        params,
    )
    event = Statement(
        "INSERT INTO events(at, actor, kind, task_id, note, data) VALUES (:now, :actor, 'dependency_added', :t, "
        ":kind || ' ' || :d, json_object('depends_on', :d, 'kind', :kind))",
        params,
    )
    if kind is not DependencyKind.BLOCKS:
        ctx.store.write([insert, event])
        return {"task_id": task_id, "depends_on": depends_on, "kind": kind.value, "result": "added"}
    for _ in range(_ATTEMPTS):
        version = read_graph_version(ctx.store)
        overlay = Overlay()
        overlay.add_blocks(task_id, depends_on)
        cycle = find_cycle(ctx.store, overlay)
        if cycle is not None:
            raise InvalidInput(
                f"{task_id} cannot depend on {depends_on}: that would close the cycle {describe_cycle(cycle)}"
            )
        try:
            ctx.store.write(
                [
                    *graph_unchanged_since(version),
                    insert,
                    event,
                    *refresh_readiness(DESCENDANTS_OF_CHANGED, {"changed": json.dumps([task_id])}, actor.name, now),
                ]
            )
        except GuardFailed:
            continue  # another writer changed the graph between our check and our write: check again
        return {"task_id": task_id, "depends_on": depends_on, "kind": kind.value, "result": "added"}
    raise Conflict("the task graph kept changing while adding this dependency; try again")
