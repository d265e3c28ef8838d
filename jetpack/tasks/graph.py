"""Deadlock (cycle) detection over the "waits-for" graph of tasks.

Hierarchy and dependencies interact, so a cycle is looked for in a graph with two nodes per
task, *start(t)* and *done(t)*:

* ``start(t) → done(x)`` for each ``blocks`` dependency of t on x;
* ``start(c) → start(parent)``: a child inherits its parent's blockers;
* ``done(p) → done(c)`` for each live child c, or ``done(t) → start(t)`` for a leaf.

Any cycle here is a set of tasks that can never all finish (e.g. a child depending on its own
parent). The existing graph is acyclic, so a cycle must use a new edge; we explore only what
is reachable from the new edges, reading the store one breadth-first level at a time.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from jetpack.store import DataLayer, Statement, expect
from jetpack.tasks.ids import parent_of

Node = tuple[str, str]  # ("start" | "done", task id)


def read_graph_version(store: DataLayer) -> str:
    """A counter bumped by every write that adds edges to the graph (optimistic concurrency)."""
    return str(store.query("SELECT value FROM meta WHERE key = 'graph_version'")[0]["value"])


def graph_unchanged_since(version: str) -> list[Statement]:
    """Statements that abort a batch if the graph changed since ``version`` was read, and bump it."""
    return [
        expect("(SELECT value FROM meta WHERE key = 'graph_version') = :v", {"v": version}),
        Statement("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'graph_version'"),
    ]


@dataclass
class Overlay:
    """Edges and tasks a write is about to add."""

    new_tasks: set[str] = field(default_factory=set)
    blocks: dict[str, set[str]] = field(default_factory=dict)  # task -> blockers it will wait for
    children: dict[str, set[str]] = field(default_factory=dict)  # parent -> new children

    def add_blocks(self, task: str, blocker: str) -> None:
        self.blocks.setdefault(task, set()).add(blocker)

    def add_child(self, parent: str, child: str) -> None:
        self.children.setdefault(parent, set()).add(child)


def find_cycle(store: DataLayer, overlay: Overlay) -> list[Node] | None:
    """Return a cycle (first node repeated at the end) that the overlay would create, or None."""
    # Every cycle the overlay creates uses one of its edges, so starts from their tails.
    sources: list[Node] = [("start", task) for task in overlay.blocks]
    sources += [("done", parent) for parent in overlay.children]
    if not sources:
        return None
    # Existing tasks can lead back into new work only through a new blocks edge of an existing
    # task or a new child of an existing parent; without either, only the new tasks can loop.
    reenters = any(t not in overlay.new_tasks for t in overlay.blocks) or any(
        p not in overlay.new_tasks for p in overlay.children
    )
    if not reenters:
        return _cycle_among_new_tasks(overlay)
    successors = _explore(store, overlay, sources, read_existing=True)
    return _first_cycle(successors, sources)


def _cycle_among_new_tasks(overlay: Overlay) -> list[Node] | None:
    """Kahn's algorithm over the new tasks only (existing ones are sinks here): linear, and the
    usual case of a big batch; a depth-first search names the cycle only when there is one."""
    new = overlay.new_tasks
    successors: dict[Node, list[Node]] = {}
    for task in new:
        targets = [("done", b) for b in overlay.blocks.get(task, ()) if b in new]
        parent = parent_of(task)
        if parent in new:
            targets.append(("start", parent))
        successors[("start", task)] = targets
        kids = overlay.children.get(task)
        successors[("done", task)] = [("done", c) for c in kids] if kids else [("start", task)]
    indegree = dict.fromkeys(successors, 0)
    for targets in successors.values():
        for target in targets:
            indegree[target] += 1
    ready = [node for node, count in indegree.items() if count == 0]
    removed = 0
    while ready:
        node = ready.pop()
        removed += 1
        for target in successors[node]:
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
    if removed == len(successors):
        return None
    stuck = sorted(node for node, count in indegree.items() if count > 0)
    return _first_cycle(successors, stuck)


def _explore(store: DataLayer, overlay: Overlay, sources: list[Node], *, read_existing: bool) -> dict[Node, list[Node]]:
    successors: dict[Node, list[Node]] = {}
    frontier = list(dict.fromkeys(sources))
    while frontier:
        existing = [n for n in frontier if n[1] not in overlay.new_tasks] if read_existing else []
        blockers = _existing_blockers(store, [t for kind, t in existing if kind == "start"])
        children = _existing_children(store, [t for kind, t in existing if kind == "done"])
        next_frontier: list[Node] = []
        for node in frontier:
            kind, task = node
            is_new = task in overlay.new_tasks
            if not is_new and not read_existing:
                successors[node] = []  # an existing task cannot lead back to new ones here
                continue
            if kind == "start":
                targets = [("done", b) for b in sorted(overlay.blocks.get(task, set()) | blockers.get(task, set()))]
                parent = parent_of(task)
                if parent is not None:
                    targets.append(("start", parent))
            else:
                kids = overlay.children.get(task, set()) | children.get(task, set())
                targets = [("done", c) for c in sorted(kids)] or [("start", task)]
            successors[node] = targets
            next_frontier.extend(t for t in targets if t not in successors)
        frontier = list(dict.fromkeys(n for n in next_frontier if n not in successors))
    return successors


def _existing_blockers(store: DataLayer, tasks: list[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    if tasks:
        for row in store.query(
            "SELECT task_id, depends_on FROM dependencies WHERE kind = 'blocks' "
            "AND task_id IN (SELECT value FROM json_each(:ids))",
            {"ids": json.dumps(tasks)},
        ):
            found.setdefault(row["task_id"], set()).add(row["depends_on"])
    return found


def _existing_children(store: DataLayer, tasks: list[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    if tasks:
        for row in store.query(
            "SELECT parent_id, id FROM tasks WHERE state != 'cancelled' "
            "AND parent_id IN (SELECT value FROM json_each(:ids))",
            {"ids": json.dumps(tasks)},
        ):
            found.setdefault(row["parent_id"], set()).add(row["id"])
    return found


def _first_cycle(successors: dict[Node, list[Node]], sources: Iterable[Node]) -> list[Node] | None:
    """Iterative depth-first search with colours; returns the first back-edge's cycle."""
    white, grey, black = 0, 1, 2
    colour: dict[Node, int] = {}
    for source in sources:
        if colour.get(source, white) != white:
            continue
        path: list[Node] = [source]
        stack = [iter(successors.get(source, []))]
        colour[source] = grey
        while stack:
            advanced = False
            for nxt in stack[-1]:
                state = colour.get(nxt, white)
                if state == grey:
                    return [*path[path.index(nxt) :], nxt]
                if state == white:
                    colour[nxt] = grey
                    path.append(nxt)
                    stack.append(iter(successors.get(nxt, [])))
                    advanced = True
                    break
            if not advanced:
                colour[path.pop()] = black
                stack.pop()
    return None


def describe_cycle(cycle: list[Node]) -> str:
    """``jp-a → jp-b → jp-a (jp-a waits for jp-b; jp-b waits for jp-a)``."""
    steps: list[str] = []
    for (kind, task), (next_kind, next_task) in itertools.pairwise(cycle):
        if kind == "start" and next_kind == "done":
            steps.append(f"{task} waits for {next_task}")
        elif kind == "start" and next_kind == "start":
            steps.append(f"{task} inherits the blockers of its parent {next_task}")
        elif kind == "done" and next_kind == "done":
            steps.append(f"{task} is done only when its child {next_task} is")
    ids = [cycle[0][1]]
    for _, task in cycle[1:]:
        if task != ids[-1]:
            ids.append(task)
    return f"{' → '.join(ids)} ({'; '.join(steps)})"
