"""create_tasks: one atomic batch that inserts a forest of tasks with their dependencies.

The batch is planned in Python (ids, hierarchy, cycle check) and written as guarded SQL:
root-id collisions fail the primary key and the plan is retried with fresh hashes; a
concurrent graph change fails the graph-version guard and the plan is re-checked.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field

from pydantic import BaseModel

from jetpack.actor import Actor
from jetpack.errors import Conflict, InvalidInput, NotFound, NotPermitted
from jetpack.store import ConstraintViolation, GuardFailed, Row, Statement, expect
from jetpack.tasks.context import QueueContext
from jetpack.tasks.graph import Overlay, describe_cycle, find_cycle, graph_unchanged_since, read_graph_version
from jetpack.tasks.ids import (
    ancestors_of,
    check_task_id,
    child_id,
    hash_length_for,
    looks_like_task_id,
    root_id,
)
from jetpack.tasks.model import NewTask, TaskState
from jetpack.tasks.sql import ready_condition

_ATTEMPTS = 6


class CreatedTask(BaseModel):
    id: str
    title: str
    state: TaskState
    ref: str | None = None
    parent_id: str | None = None


@dataclass
class _Planned:
    spec: NewTask
    parent_key: int | None = None  # index of a new parent in the plan
    parent_id: str | None = None  # an existing parent
    blockers_new: list[int] = field(default_factory=list)
    blockers_existing: list[str] = field(default_factory=list)
    task_id: str = ""


def create_tasks(ctx: QueueContext, actor: Actor, specs: list[NewTask]) -> list[CreatedTask]:
    if not specs:
        raise InvalidInput("tasks is empty; pass at least one task with a title")
    plan, existing = _plan(ctx, actor, specs)
    for attempt in range(_ATTEMPTS):
        graph_version = read_graph_version(ctx.store)
        extra_length = attempt // 2
        _assign_ids(ctx, plan, existing, extra_length)
        _refuse_cycles(ctx, plan)
        try:
            ctx.store.write(_statements(ctx, actor, plan, existing, graph_version))
        except GuardFailed:
            existing = _read_existing(ctx, actor, plan)  # a parent changed or the graph moved on
            continue
        except ConstraintViolation as error:
            if "tasks.id" in str(error) or "UNIQUE" in str(error):
                existing = _read_existing(ctx, actor, plan)
                continue  # a root hash or child number was taken meanwhile: re-plan the ids
            raise
        states = ctx.rows_by_id([p.task_id for p in plan], "id, state")
        return [
            CreatedTask(
                id=p.task_id,
                title=p.spec.title,
                state=TaskState(states[p.task_id]["state"]),
                ref=p.spec.ref,
                parent_id=p.parent_id if p.parent_key is None else plan[p.parent_key].task_id,
            )
            for p in plan
        ]
    raise Conflict("could not create the tasks: the queue kept changing underneath; try again")


def _plan(ctx: QueueContext, actor: Actor, specs: list[NewTask]) -> tuple[list[_Planned], dict[str, Row]]:
    plan: list[_Planned] = []
    refs: dict[str, int] = {}

    def visit(spec: NewTask, parent_key: int | None) -> None:
        if parent_key is not None and spec.parent is not None:
            raise InvalidInput(f"task {spec.title!r} is nested under a parent and also names parent={spec.parent!r}")
        key = len(plan)
        plan.append(_Planned(spec=spec, parent_key=parent_key))
        if spec.ref is not None:
            if looks_like_task_id(spec.ref):
                raise InvalidInput(f"ref {spec.ref!r} looks like a task id; use a plain name such as 'api' or 'step-2'")
            if spec.ref in refs:
                raise InvalidInput(f"ref {spec.ref!r} is used twice in this batch; refs must be unique")
            refs[spec.ref] = key
        for child in spec.children:
            visit(child, key)

    for spec in specs:
        visit(spec, None)

    for planned in plan:
        if planned.spec.parent is not None:
            if planned.spec.parent in refs:
                planned.parent_key = refs[planned.spec.parent]
            else:
                planned.parent_id = check_task_id(planned.spec.parent)
        for target in planned.spec.depends_on:
            if target in refs:
                planned.blockers_new.append(refs[target])
            else:
                planned.blockers_existing.append(check_task_id(target))
    _check_parent_chain(plan)
    return plan, _read_existing(ctx, actor, plan)


def _check_parent_chain(plan: list[_Planned]) -> None:
    for start, planned in enumerate(plan):
        seen = {start}
        key = planned.parent_key
        while key is not None:
            if key in seen:
                raise InvalidInput(f"parent refs form a loop around task {planned.spec.title!r}")
            seen.add(key)
            key = plan[key].parent_key


def _read_existing(ctx: QueueContext, actor: Actor, plan: list[_Planned]) -> dict[str, Row]:
    parents = {p.parent_id for p in plan if p.parent_id}
    wanted = parents | {b for p in plan for b in p.blockers_existing}
    rows = ctx.rows_by_id(sorted(wanted), "id, state, assignee, depth, next_child")
    missing = sorted(wanted - set(rows))
    if missing:
        raise NotFound(f"no task {', '.join(missing)}; refer to existing ids or to refs defined in this batch")
    for parent in sorted(parents):
        _check_parent_accepts_children(ctx, actor, rows[parent])
    return rows


def _check_parent_accepts_children(ctx: QueueContext, actor: Actor, row: Row) -> None:
    state = TaskState(row["state"])
    if row["depth"] >= ctx.settings.max_depth:
        raise InvalidInput(
            f"{row['id']} is at the maximum depth ({ctx.settings.max_depth}); add the task as its sibling "
            "or raise tasks.max_depth in .jetpack/config.toml"
        )
    if state in (TaskState.CLAIMED, TaskState.IN_PROGRESS) and row["assignee"] != actor.name and not actor.operator:
        raise NotPermitted(f"{row['id']} is claimed by {row['assignee']}; only its holder can split it into subtasks")
    if state in (TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED, TaskState.BLOCKED):
        raise Conflict(
            f"{row['id']} is {state.value}; children can be added only to open, ready or claimed tasks "
            f"({'reopen' if state != TaskState.BLOCKED else 'unblock'} it first)"
        )


def _assign_ids(ctx: QueueContext, plan: list[_Planned], existing: dict[str, Row], extra_length: int) -> None:
    roots = [p for p in plan if p.parent_key is None and p.parent_id is None]
    length = 0
    if roots:
        count = ctx.store.query("SELECT count(*) AS n FROM tasks WHERE parent_id IS NULL")[0]["n"]
        length = hash_length_for(count + len(roots)) + extra_length
    taken: set[str] = set()
    next_number = {pid: row["next_child"] for pid, row in existing.items()}
    children_of_new: dict[int, int] = {}

    def level(key: int) -> int:
        parent = plan[key].parent_key
        return 0 if parent is None else 1 + level(parent)

    for planned in roots:
        candidate = ""
        while not candidate or candidate in taken:
            seed = f"{planned.spec.title}|{ctx.now()}|{secrets.token_hex(8)}"
            candidate = root_id(ctx.settings.id_prefix, seed, length)
        planned.task_id = candidate
        taken.add(candidate)
    if roots:
        _avoid_existing_root_ids(ctx, roots, taken, length)
    for key in sorted(range(len(plan)), key=level):  # parents get their ids before their children
        planned = plan[key]
        if planned.parent_key is not None:
            number = children_of_new.get(planned.parent_key, 0) + 1
            children_of_new[planned.parent_key] = number
            planned.task_id = child_id(plan[planned.parent_key].task_id, number)
        elif planned.parent_id is not None:
            next_number[planned.parent_id] += 1
            planned.task_id = child_id(planned.parent_id, next_number[planned.parent_id])
        depth = planned.task_id.count(".") + 1
        if depth > ctx.settings.max_depth:
            raise InvalidInput(
                f"task {planned.spec.title!r} would be at depth {depth}, beyond the maximum of "
                f"{ctx.settings.max_depth}; flatten the tree or raise tasks.max_depth in .jetpack/config.toml"
            )


def _avoid_existing_root_ids(ctx: QueueContext, roots: list[_Planned], taken: set[str], length: int) -> None:
    """Re-draw root ids that already exist, so a big batch does not fail on its primary key."""
    clashing = roots
    while clashing:
        existing = set(ctx.rows_by_id([p.task_id for p in clashing], "id"))
        clashing = [p for p in clashing if p.task_id in existing]
        for planned in clashing:
            while planned.task_id in existing or planned.task_id in taken:
                seed = f"{planned.spec.title}|{ctx.now()}|{secrets.token_hex(8)}"
                planned.task_id = root_id(ctx.settings.id_prefix, seed, length)
            taken.add(planned.task_id)


def _refuse_cycles(ctx: QueueContext, plan: list[_Planned]) -> None:
    overlay = Overlay(new_tasks={p.task_id for p in plan})
    for planned in plan:
        parent = planned.parent_id if planned.parent_key is None else plan[planned.parent_key].task_id
        if parent is not None:
            overlay.add_child(parent, planned.task_id)
        for key in planned.blockers_new:
            overlay.add_blocks(planned.task_id, plan[key].task_id)
        for blocker in planned.blockers_existing:
            overlay.add_blocks(planned.task_id, blocker)
    cycle = find_cycle(ctx.store, overlay)
    if cycle is not None:
        raise InvalidInput(f"these dependencies would form a cycle that can never finish: {describe_cycle(cycle)}")


_TASK_COLUMNS = """INSERT INTO tasks(id, parent_id, depth, title, description, acceptance, state, priority,
        skills, files, labels, metadata, estimate_minutes, created_by, max_attempts, next_child,
        changed_by, change_kind, created_at, updated_at)"""
_TASK_VALUES = """:priority, :skills, :files, :labels, :metadata, :estimate, :actor, :max_attempts, :next_child,
        :actor, 'created', :now, :now"""
# A task the plan alone shows to be waiting (it has new subtasks, or it or a new ancestor has a
# new blocker) is inserted open; the others ask the readiness rule, which also sees existing tasks.
_INSERT_OPEN = f"""{_TASK_COLUMNS}
    VALUES (:id, :parent_id, :depth, :title, :description, :acceptance, 'open', {_TASK_VALUES})"""
_INSERT_BY_RULE = f"""{_TASK_COLUMNS}
    SELECT :id, :parent_id, :depth, :title, :description, :acceptance,
        CASE WHEN {ready_condition(":id")} THEN 'ready' ELSE 'open' END, {_TASK_VALUES}"""


def _to_json(value: object) -> str:
    return "[]" if value == [] else "{}" if value == {} else json.dumps(value)


def _known_to_wait(plan: list[_Planned]) -> list[bool]:
    """Per planned task: True when it must start open whatever the existing tasks' states are."""
    has_children = {p.parent_key for p in plan if p.parent_key is not None}
    waits: list[bool | None] = [None] * len(plan)

    def visit(key: int) -> bool:
        known = waits[key]
        if known is None:
            planned = plan[key]
            parent = planned.parent_key
            known = key in has_children or bool(planned.blockers_new) or (parent is not None and _inherits(parent))
            waits[key] = known
        return known

    def _inherits(key: int) -> bool:  # does a new ancestor of a task have a (new, so unfinished) blocker?
        planned = plan[key]
        return bool(planned.blockers_new) or (planned.parent_key is not None and _inherits(planned.parent_key))

    return [visit(key) for key in range(len(plan))]


def _ancestry(plan: list[_Planned]) -> list[list[str]]:
    """Ancestors of each planned task, nearest first, without re-parsing ids."""
    memo: dict[int, list[str]] = {}

    def of(key: int) -> list[str]:
        if key not in memo:
            planned = plan[key]
            if planned.parent_key is not None:
                memo[key] = [plan[planned.parent_key].task_id, *of(planned.parent_key)]
            else:
                memo[key] = ancestors_of(planned.task_id)
        return memo[key]

    return [of(key) for key in range(len(plan))]


def _statements(
    ctx: QueueContext, actor: Actor, plan: list[_Planned], existing: dict[str, Row], graph_version: str
) -> list[Statement]:
    now = ctx.now()
    statements: list[Statement] = []
    if any(p.blockers_new or p.blockers_existing for p in plan):
        statements += graph_unchanged_since(graph_version)
    child_counts: dict[str, int] = {}
    for planned in plan:
        if planned.parent_key is not None:
            parent = plan[planned.parent_key].task_id
            child_counts[parent] = child_counts.get(parent, 0) + 1
    existing_parents = sorted({p.parent_id for p in plan if p.parent_id})
    for parent in existing_parents:
        statements += [
            expect(
                "EXISTS (SELECT 1 FROM tasks WHERE id = :p AND (state IN ('open', 'ready') "
                "OR (state IN ('claimed', 'in_progress') AND (assignee = :actor OR :operator))))",
                {"p": parent, "actor": actor.name, "operator": actor.operator},
            ),
            Statement(
                "UPDATE tasks SET next_child = max(next_child, :n) WHERE id = :p",
                {
                    "p": parent,
                    "n": max(int(p.task_id.rsplit(".", 1)[1]) for p in plan if p.parent_id == parent),
                },
            ),
        ]
    ancestors = _ancestry(plan)
    ancestry = [
        [p.task_id, ancestor, distance]
        for p, chain in zip(plan, ancestors, strict=True)
        for distance, ancestor in enumerate([p.task_id, *chain])
    ]
    statements.append(
        Statement(
            "INSERT INTO task_ancestors(task_id, ancestor_id, distance) "
            "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]') "
            "FROM json_each(:rows)",
            {"rows": json.dumps(ancestry)},
        )
    )
    edges = list(
        dict.fromkeys(
            [(p.task_id, plan[k].task_id) for p in plan for k in p.blockers_new]
            + [(p.task_id, b) for p in plan for b in p.blockers_existing]
        )
    )
    if edges:
        statements.append(
            Statement(
                "INSERT INTO dependencies(task_id, depends_on, kind, created_by, created_at) "
                "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), 'blocks', :actor, :now "
                "FROM json_each(:rows)",
                {"rows": json.dumps(edges), "actor": actor.name, "now": now},
            )
        )
    waiting = _known_to_wait(plan)
    opened: list[Statement] = []
    by_rule: list[Statement] = []
    for key, planned in enumerate(plan):
        spec = planned.spec
        params = {
            "id": planned.task_id,
            "parent_id": ancestors[key][0] if ancestors[key] else None,
            "depth": len(ancestors[key]) + 1,
            "title": spec.title,
            "description": spec.description,
            "acceptance": spec.acceptance,
            "priority": spec.priority,
            "skills": _to_json(spec.skills),
            "files": _to_json(spec.files),
            "labels": _to_json(spec.labels),
            "metadata": _to_json(spec.metadata),
            "estimate": spec.estimate_minutes,
            "actor": actor.name,
            "max_attempts": spec.max_attempts or ctx.settings.max_attempts,
            "next_child": child_counts.get(planned.task_id, 0),
            "now": now,
        }
        (opened if waiting[key] else by_rule).append(
            Statement(_INSERT_OPEN if waiting[key] else _INSERT_BY_RULE, params)
        )
    # Rule-decided rows are leaves in this plan; deepest first anyway, so the rule sees all rows below.
    by_rule.sort(key=lambda st: -int(st.params["depth"]))  # type: ignore[call-overload]
    statements += [*opened, *by_rule]
    for parent in existing_parents:
        statements.append(
            Statement(
                """UPDATE tasks SET state = 'open', assignee = NULL, lease_expires_at = NULL,
                    change_kind = 'split', changed_by = :actor, change_note = 'subtasks added', updated_at = :now
                WHERE id = :p AND state IN ('ready', 'claimed', 'in_progress')""",
                {"p": parent, "actor": actor.name, "now": now},
            )
        )
    return statements
