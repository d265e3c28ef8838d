"""The task DAG laid out for the graph view: layered left to right, blockers before what waits on them.

Nodes are the live (non-cancelled) tasks, parents included, since a ``blocks`` dependency may name a
whole epic; edges are the ``blocks`` dependencies, from the blocker to the task that waits. A task's
layer is the longest chain of edges before it (Kahn's algorithm, iterative), the order within a
layer comes from a few barycenter sweeps (fewer crossings), and a tall layer wraps into several
columns so the drawing stays near square. Tasks without any edge are packed into columns after
the layered part. Everything runs in Python in well under a second for a few thousand tasks.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from itertools import pairwise
from typing import TypedDict

from jetpack.errors import InvalidInput
from jetpack.store import DataLayer, Row
from jetpack.swarm.graph import task_graph

NODE_W, NODE_H = 180, 44
GAP_X, GAP_Y = 60, 16
TITLE_MAX = 60
SWEEPS = 4
MIN_ROWS = 12
MAX_LIMIT = 20_000
FINISHED = frozenset({"done", "failed"})


class GraphNode(TypedDict):
    id: str
    title: str
    state: str
    assignee: str | None
    priority: int
    x: int
    y: int
    w: int
    h: int
    critical: bool


GraphEdge = TypedDict("GraphEdge", {"from": str, "to": str, "critical": bool})


class GraphLayout(TypedDict):
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    width: int
    height: int
    critical_path: list[str]
    truncated: bool


def graph_layout(store: DataLayer, *, limit: int = 2500) -> GraphLayout:
    """Positions for at most ``limit`` live tasks (unfinished ones first, the critical path first of
    all) and the ``blocks`` edges between them; the critical path is TaskGraph's."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be from 1 to {MAX_LIMIT}, not {limit}; the default (2500) suits most plans")
    path = task_graph(store).critical_path()
    on_path = set(path)
    tasks = store.query("SELECT id, title, state, assignee, priority, closed_at FROM tasks WHERE state != 'cancelled'")
    tasks.sort(key=lambda t: _keep_first(t, on_path))
    kept = sorted(tasks[:limit], key=lambda t: t["id"])  # by id: siblings start out side by side
    position = {t["id"]: i for i, t in enumerate(kept)}
    links = [
        (position[r["depends_on"]], position[r["task_id"]])
        for r in store.query("SELECT depends_on, task_id FROM dependencies WHERE kind = 'blocks'")
        if r["depends_on"] in position and r["task_id"] in position
    ]
    columns = _columns(len(kept), links)
    rows = max((len(c) for c in columns), default=0)
    xy = _coordinates(columns, rows)
    steps = set(pairwise(path))
    return {
        "nodes": [_node(t, xy[i], t["id"] in on_path) for i, t in enumerate(kept)],
        "edges": [
            {"from": kept[a]["id"], "to": kept[b]["id"], "critical": (kept[a]["id"], kept[b]["id"]) in steps}
            for a, b in links
        ],
        "width": max(0, len(columns) * (NODE_W + GAP_X) - GAP_X),
        "height": max(0, rows * (NODE_H + GAP_Y) - GAP_Y),
        "critical_path": path,
        "truncated": len(tasks) > limit,
    }


def _keep_first(task: Row, on_path: set[str]) -> tuple[int, int, int, str]:
    """Which tasks a truncated graph keeps: the critical path, other unfinished work by priority,
    then finished tasks, the most recently closed first."""
    if task["state"] in FINISHED:
        return (2, 0, -(task["closed_at"] or 0), task["id"])
    return (0 if task["id"] in on_path else 1, task["priority"], 0, task["id"])


def _node(task: Row, xy: tuple[int, int], critical: bool) -> GraphNode:
    title: str = task["title"]
    return {
        "id": task["id"],
        "title": title if len(title) <= TITLE_MAX else title[: TITLE_MAX - 1] + "…",
        "state": task["state"],
        "assignee": task["assignee"],
        "priority": task["priority"],
        "x": xy[0],
        "y": xy[1],
        "w": NODE_W,
        "h": NODE_H,
        "critical": critical,
    }


def _columns(n: int, links: Sequence[tuple[int, int]]) -> list[list[int]]:
    """Nodes column by column, left to right: the ordered layers, each wrapped into columns of at
    most ``rows`` nodes, then the nodes without edges."""
    preds: list[list[int]] = [[] for _ in range(n)]
    succs: list[list[int]] = [[] for _ in range(n)]
    for a, b in links:
        succs[a].append(b)
        preds[b].append(a)
    connected = [v for v in range(n) if preds[v] or succs[v]]
    layers = _order_within_layers(_layers(connected, preds, succs), preds, succs)
    alone = [v for v in range(n) if not (preds[v] or succs[v])]
    rows = max(MIN_ROWS, math.ceil(math.sqrt(2 * n)))
    return [group[k : k + rows] for group in [*layers, alone] for k in range(0, len(group), rows)]


def _layers(nodes: list[int], preds: list[list[int]], succs: list[list[int]]) -> list[list[int]]:
    """Layer = the longest chain of edges before a node (Kahn's algorithm). Nodes on or behind a
    cycle, which the task queue refuses but an old database might hold, go in one last layer."""
    waiting = {v: len(preds[v]) for v in nodes}
    layer = dict.fromkeys(nodes, 0)
    queue = deque(v for v in nodes if not waiting[v])
    placed = 0
    while queue:
        v = queue.popleft()
        placed += 1
        for w in succs[v]:
            layer[w] = max(layer[w], layer[v] + 1)
            waiting[w] -= 1
            if not waiting[w]:
                queue.append(w)
    if placed < len(nodes):
        last = max((layer[v] for v in nodes if not waiting[v]), default=-1) + 1
        for v in nodes:
            if waiting[v]:
                layer[v] = last
    layers: list[list[int]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for v in nodes:
        layers[layer[v]].append(v)
    return layers


def _order_within_layers(layers: list[list[int]], preds: list[list[int]], succs: list[list[int]]) -> list[list[int]]:
    """Barycenter sweeps, down then up: each node moves toward the mean relative position of its
    neighbours on the side swept from (a stable sort, so ties keep their order)."""
    where: dict[int, float] = {}

    def place(layer: list[int]) -> None:
        for i, v in enumerate(layer):
            where[v] = (i + 0.5) / len(layer)

    def barycenter(v: int, neighbours: list[int]) -> float:
        return sum(where[u] for u in neighbours) / len(neighbours) if neighbours else where[v]

    for layer in layers:
        place(layer)
    for sweep in range(SWEEPS):
        downward = sweep % 2 == 0
        side = preds if downward else succs
        for layer in layers[1:] if downward else reversed(layers[:-1]):
            layer.sort(key=lambda v: barycenter(v, side[v]))
            place(layer)
    return layers


def _coordinates(columns: list[list[int]], rows: int) -> dict[int, tuple[int, int]]:
    """Top-left corners: columns side by side, each centred vertically on the tallest."""
    xy: dict[int, tuple[int, int]] = {}
    for c, column in enumerate(columns):
        top = (rows - len(column)) * (NODE_H + GAP_Y) // 2
        for i, v in enumerate(column):
            xy[v] = (c * (NODE_W + GAP_X), top + i * (NODE_H + GAP_Y))
    return xy
