"""The shape of the live task graph, read from the DataLayer in a few aggregate rows.

Everything here changes only when tasks or ``blocks`` edges are added, or tasks cancelled or
un-cancelled; the states of the tasks are read on their own (:func:`read_states`) when only
they changed. See jetpack/swarm/graph.py for the graph itself.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import cast

import numpy as np

from jetpack.errors import NotFound
from jetpack.store import DataLayer
from jetpack.swarm.graph_passes import BoolArray, Csr, FloatArray, IntArray, LevelledEdges, topological_levels
from jetpack.tasks.ids import check_task_id

STATES = ("open", "ready", "claimed", "in_progress", "done", "failed", "cancelled", "blocked")
_CODE = {state: code for code, state in enumerate(STATES)}
READY, DONE, CANCELLED = _CODE["ready"], _CODE["done"], _CODE["cancelled"]


@dataclass(frozen=True)
class GraphVersion:
    graph: str
    last_task: int
    last_event: int

    @property
    def structural(self) -> tuple[str, int]:
        return (self.graph, self.last_task)


def read_version(store: DataLayer) -> GraphVersion:
    row = store.query(
        "SELECT (SELECT value FROM meta WHERE key = 'graph_version') AS g, "
        "(SELECT max(rowid) FROM tasks) AS t, (SELECT max(id) FROM events) AS e"
    )[0]
    return GraphVersion(str(row["g"]), int(row["t"] or 0), int(row["e"] or 0))


@dataclass(frozen=True)
class Structure:
    """The live graph's shape: everything that changes only when tasks or edges do."""

    version: tuple[str, int]
    ids: list[str]
    index: dict[str, int]
    rowid_order: IntArray  # positions of the tasks by ascending rowid
    rowids_sorted: IntArray
    parent: IntArray  # -1 for roots of the hierarchy
    live: BoolArray  # not cancelled
    leaf: BoolArray  # live and without live children: work
    estimate: FloatArray  # NaN when missing
    level: IntArray  # per node (2n): topological level, -1 when dead or behind a cycle
    depth: IntArray  # per task: units of work before it on its longest chain of blockers
    max_depth: int
    forward: LevelledEdges  # keyed by origin level, grouped by target
    backward: LevelledEdges  # keyed by target level (descending), grouped by origin
    edges: tuple[IntArray, IntArray]  # (origin, target) of every edge between settled nodes
    cycles: list[list[str]]
    stuck: int  # tasks on or behind a cycle, left out of every figure

    @property
    def size(self) -> int:
        return len(self.ids)

    @cached_property
    def successors(self) -> Csr:
        """Built on first use (walks and transitive queries), not with every recompute."""
        return Csr.of(2 * self.size, *self.edges)

    @cached_property
    def predecessors(self) -> Csr:
        return Csr.of(2 * self.size, self.edges[1], self.edges[0])

    def position(self, task_id: str) -> int:
        check_task_id(task_id)
        found = self.index.get(task_id)
        if found is None:
            raise NotFound(f"no task {task_id}; call list_tasks to see existing ids")
        return found


_STATE_CODE_SQL = "CASE state " + " ".join(f"WHEN '{name}' THEN {code}" for code, name in enumerate(STATES)) + " END"


def read_structure(store: DataLayer, version: tuple[str, int]) -> tuple[Structure, IntArray]:
    """Read every task and ``blocks`` edge (one aggregate row each: no dict per task) and build
    the structure; also returns the state codes read with it."""
    row = store.query(
        "SELECT json_group_array(r) AS rowids, json_group_array(id) AS ids, json_group_array(parent_id) AS parents, "
        "json_group_array(s) AS states, json_group_array(estimate_minutes) AS estimates "
        f"FROM (SELECT rowid AS r, id, parent_id, {_STATE_CODE_SQL} AS s, estimate_minutes FROM tasks ORDER BY rowid)"
    )[0]
    edges = store.query(
        "SELECT json_group_array(task_id) AS waiting, json_group_array(depends_on) AS blocking "
        "FROM dependencies WHERE kind = 'blocks'"
    )[0]
    ids: list[str] = json.loads(row["ids"])
    index = dict(zip(ids, range(len(ids)), strict=True))
    states = _codes(json.loads(row["states"]))
    structure = build_structure(
        version,
        ids,
        index,
        _positions(index, json.loads(row["parents"])),
        states,
        np.array(json.loads(row["estimates"]), dtype=np.float64).reshape(-1),  # null -> NaN
        np.array(json.loads(row["rowids"]), dtype=np.int64).reshape(-1),
        _positions(index, json.loads(edges["waiting"])),
        _positions(index, json.loads(edges["blocking"])),
    )
    return structure, states


def _positions(index: dict[str, int], ids: list[str | None]) -> IntArray:
    """Positions of the ids (-1 for null or unknown), looked up by a C-level map."""
    lookup = cast(Callable[[str | None, int], int], index.get)  # dict.get takes any hashable, None included
    return np.fromiter(map(lookup, ids, itertools.repeat(-1)), dtype=np.int64, count=len(ids))


def _codes(values: list[int | None]) -> IntArray:
    """State codes; an unknown state (null from the CASE) counts as open."""
    return np.array([0 if v is None else v for v in values] if None in values else values, dtype=np.int64).reshape(-1)


def build_structure(
    version: tuple[str, int],
    ids: list[str],
    index: dict[str, int],
    parent: IntArray,
    states: IntArray,
    estimate: FloatArray,
    rowids: IntArray,
    waiting: IntArray,
    blocking: IntArray,
) -> Structure:
    n = len(ids)
    live = states != CANCELLED
    has_parent = (parent >= 0) & live
    has_parent[has_parent] &= live[parent[has_parent]]
    live_children = np.bincount(parent[has_parent], minlength=n) if n else np.zeros(0, dtype=np.int64)
    leaf = live & (live_children == 0)
    ok = (waiting >= 0) & (blocking >= 0)
    waiting, blocking = waiting[ok], blocking[ok]
    ok = live[waiting] & live[blocking]
    waiting, blocking = waiting[ok], blocking[ok]
    children = np.flatnonzero(has_parent)
    leaves = np.flatnonzero(leaf)
    src = np.concatenate((n + blocking, parent[children], n + children, leaves)).astype(np.int64)
    dst = np.concatenate((waiting, children, n + parent[children], n + leaves)).astype(np.int64)
    nodes = 2 * n
    alive = np.concatenate((live, live))
    unit = np.zeros(nodes, dtype=np.int64)
    unit[n + leaves] = 1
    level, before = topological_levels(nodes, src, dst, alive, unit)
    stuck_nodes = alive & (level < 0)
    cycles = _find_cycles(ids, n, src, dst, stuck_nodes) if stuck_nodes.any() else []
    settled = (level[src] >= 0) & (level[dst] >= 0)
    src, dst = src[settled], dst[settled]
    depth = before[:n]
    max_depth = int(depth[leaf & (level[:n] >= 0)].max()) if (leaf & (level[:n] >= 0)).any() else 0
    ascending = rowids.size < 2 or bool((rowids[1:] > rowids[:-1]).all())  # read ORDER BY rowid: usually
    order = np.arange(rowids.size, dtype=np.int64) if ascending else np.argsort(rowids, kind="stable")
    return Structure(
        version=version,
        ids=ids,
        index=index,
        rowid_order=order,
        rowids_sorted=rowids[order],
        parent=parent,
        live=live,
        leaf=leaf,
        estimate=estimate,
        level=level,
        depth=depth,
        max_depth=max_depth,
        forward=LevelledEdges.sort(src, dst, level[src], descending=False),
        backward=LevelledEdges.sort(dst, src, level[dst], descending=True),
        edges=(src, dst),
        cycles=cycles,
        stuck=int(np.count_nonzero(stuck_nodes[:n] | stuck_nodes[n:])),
    )


def changed_states(
    store: DataLayer, structure: Structure, states: IntArray, since_event: int, until_event: int
) -> IntArray | None:
    """``states`` moved forward by the state changes logged in events (since_event, until_event]
    (every state change leaves one: the tasks_state_event trigger); None when there are too many
    to be worth it or one names a task the structure does not know."""
    if until_event - since_event > max(1000, structure.size // 4):
        return read_states(store, structure)
    rows = store.query(
        "SELECT task_id, after_state FROM events WHERE id > :since AND id <= :until AND after_state IS NOT NULL "
        "ORDER BY id",
        {"since": since_event, "until": until_event},
    )
    moved = states.copy()
    for row in rows:
        position = structure.index.get(row["task_id"])
        if position is None:
            return read_states(store, structure)
        moved[position] = _CODE.get(row["after_state"], 0)
    return moved


def read_states(store: DataLayer, structure: Structure) -> IntArray | None:
    """The state codes of the structure's tasks now, or None when tasks were added or removed."""
    row = store.query(
        "SELECT json_group_array(r) AS rowids, json_group_array(s) AS states "
        f"FROM (SELECT rowid AS r, {_STATE_CODE_SQL} AS s FROM tasks ORDER BY rowid)"
    )[0]
    rowids = np.array(json.loads(row["rowids"]), dtype=np.int64).reshape(-1)
    if rowids.size != structure.size:
        return None
    at = np.searchsorted(structure.rowids_sorted, rowids)
    if at.size and (at.max() >= structure.size or not np.array_equal(structure.rowids_sorted[at], rowids)):
        return None
    states = np.empty(structure.size, dtype=np.int64)
    states[structure.rowid_order[at]] = _codes(json.loads(row["states"]))
    return states


def _find_cycles(
    ids: list[str], n: int, src: IntArray, dst: IntArray, stuck: BoolArray, limit: int = 5
) -> list[list[str]]:
    """A few cycles among the stuck nodes (there should be none: writes refuse them)."""
    keep = stuck[src] & stuck[dst]
    successors: dict[int, list[int]] = {}
    for a, b in zip(src[keep].tolist(), dst[keep].tolist(), strict=True):
        successors.setdefault(a, []).append(b)
    found: list[list[str]] = []
    colour: dict[int, int] = {}
    for root in sorted(successors):
        if colour.get(root):
            continue
        path = [root]
        stack = [iter(successors.get(root, []))]
        colour[root] = 1
        while stack and len(found) < limit:
            advanced = False
            for nxt in stack[-1]:
                if colour.get(nxt) == 1:
                    cycle = path[path.index(nxt) :]
                    tasks = [ids[v % n] for v in cycle]
                    found.append(list(dict.fromkeys(tasks)))
                    continue
                if not colour.get(nxt):
                    colour[nxt] = 1
                    path.append(nxt)
                    stack.append(iter(successors.get(nxt, [])))
                    advanced = True
                    break
            if not advanced:
                colour[path.pop()] = 2
                stack.pop()
    return found
