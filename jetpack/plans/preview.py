"""What a plan will create (or created): the tree with ids, dependencies and the critical path.

The critical path is computed on the plan in memory, over its leaves (only leaves are worked
on): a leaf waits for every leaf under each task it or one of its ancestors depends on — the
queue's readiness rule. Each leaf weighs its estimate; a leaf without one weighs the median of
the estimates given, and when no leaf has one every leaf weighs 1 (the path is then counted in
tasks) — the weights the swarm's TaskGraph uses, so the path matches its ``critical_path`` once
the plan is loaded.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from pydantic import BaseModel

from jetpack.plans.resolve import PlanNode, ResolvedPlan


class PlanTask(BaseModel):
    id: str
    title: str
    line: int
    parent_id: str | None = None
    depends_on: list[str] = []
    files: list[str] = []
    skills: list[str] = []
    labels: list[str] = []
    priority: int = 2
    estimate_minutes: int | None = None
    state: str | None = None


class CriticalPath(BaseModel):
    ids: list[str]
    titles: list[str]
    minutes: int | None = None  # None when the plan has no estimates: the length is then in tasks
    tasks: int


class PlanPreview(BaseModel):
    source: str
    format: str
    created: bool
    count: int
    leaves: int
    dependencies: int
    tasks: list[PlanTask]
    critical_path: CriticalPath


def preview_plan(
    plan: ResolvedPlan, ids: Sequence[str] | None = None, states: Sequence[str] | None = None
) -> PlanPreview:
    """The plan's tree with placeholder ids (``jp-?1.2``), or with the real ``ids`` once loaded."""
    shown = list(ids) if ids is not None else [n.placeholder for n in plan.nodes]
    tasks = [
        PlanTask(
            id=shown[n.index],
            title=n.title,
            line=n.line,
            parent_id=shown[n.parent] if n.parent is not None else None,
            depends_on=[shown[b] for b in n.blockers] + n.existing,
            files=n.spec.files,
            skills=n.spec.skills,
            labels=n.spec.labels,
            priority=n.spec.priority,
            estimate_minutes=n.spec.estimate_minutes,
            state=states[n.index] if states is not None else None,
        )
        for n in plan.nodes
    ]
    path, minutes = critical_path(plan)
    return PlanPreview(
        source=plan.source,
        format=plan.format.value,
        created=ids is not None,
        count=len(plan.nodes),
        leaves=len(plan.leaves),
        dependencies=sum(len(n.blockers) + len(n.existing) for n in plan.nodes),
        tasks=tasks,
        critical_path=CriticalPath(
            ids=[shown[i] for i in path], titles=[plan.nodes[i].title for i in path], minutes=minutes, tasks=len(path)
        ),
    )


def critical_path(plan: ResolvedPlan) -> tuple[list[int], int | None]:
    """The heaviest chain of leaves through the plan's dependencies, and its minutes (None
    without estimates)."""
    nodes = plan.nodes
    leaves = plan.leaves
    if not leaves:
        return [], None
    weight = _weights(leaves)
    under = _leaves_under(nodes)
    waits_for = {leaf.index: _prerequisites(nodes, leaf, under) for leaf in leaves}
    finish: dict[int, float] = {}
    previous: dict[int, int | None] = {}
    for index in _topological(waits_for):
        before = max(waits_for[index], key=lambda p: finish[p], default=None)
        finish[index] = weight[index] + (finish[before] if before is not None else 0.0)
        previous[index] = before
    last: int | None = max(finish, key=lambda i: (finish[i], -i))
    path: list[int] = []
    while last is not None:
        path.append(last)
        last = previous[last]
    path.reverse()
    has_estimates = any(n.spec.estimate_minutes is not None for n in leaves)
    return path, round(sum(weight[i] for i in path)) if has_estimates else None


def _weights(leaves: list[PlanNode]) -> dict[int, float]:
    known = [n.spec.estimate_minutes for n in leaves if n.spec.estimate_minutes is not None]
    fallback = statistics.median(known) if known else 1.0
    return {
        n.index: float(n.spec.estimate_minutes) if n.spec.estimate_minutes is not None else fallback for n in leaves
    }


def _leaves_under(nodes: list[PlanNode]) -> dict[int, list[int]]:
    under: dict[int, list[int]] = {}
    for node in reversed(nodes):  # pre-order reversed: children before their parents
        under[node.index] = [leaf for c in node.children for leaf in under[c]] if node.children else [node.index]
    return under


def _prerequisites(nodes: list[PlanNode], leaf: PlanNode, under: dict[int, list[int]]) -> set[int]:
    found: set[int] = set()
    current: PlanNode | None = leaf
    while current is not None:  # a leaf waits for its own blockers and its ancestors'
        for blocker in current.blockers:
            found.update(under[blocker])
        current = nodes[current.parent] if current.parent is not None else None
    return found


def _topological(waits_for: dict[int, set[int]]) -> list[int]:
    """Kahn's order over the leaves (the plan is known to be acyclic)."""
    remaining = {leaf: len(prereqs) for leaf, prereqs in waits_for.items()}
    dependants: dict[int, list[int]] = {leaf: [] for leaf in waits_for}
    for leaf, prereqs in waits_for.items():
        for prereq in prereqs:
            dependants[prereq].append(leaf)
    order = sorted(leaf for leaf, count in remaining.items() if count == 0)
    for leaf in order:  # the list grows while it is walked
        for dependant in dependants[leaf]:
            remaining[dependant] -= 1
            if remaining[dependant] == 0:
                order.append(dependant)
    return order
