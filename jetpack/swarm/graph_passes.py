"""Array passes over a DAG for TaskGraph: topological levels, longest paths, reachability counts.

The graph is given as edge arrays (``src → dst``, int64 node numbers). Every pass here is
level-synchronous: nodes are grouped by their topological level and each level is one handful
of numpy calls over the edges leaving (or entering) it, so the cost is linear in the edges plus
a small constant per level, with no Python object per node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
WordArray = npt.NDArray[np.uint64]


@dataclass(frozen=True)
class Csr:
    """Adjacency in compressed rows: the neighbours of node v are ``targets[offsets[v]:offsets[v + 1]]``."""

    offsets: IntArray
    targets: IntArray

    @classmethod
    def of(cls, nodes: int, origin: IntArray, target: IntArray) -> Csr:
        order = np.argsort(origin)  # any order among one node's neighbours will do (and is 4x faster)
        offsets = np.zeros(nodes + 1, dtype=np.int64)
        np.cumsum(np.bincount(origin, minlength=nodes), out=offsets[1:])
        return cls(offsets, target[order])

    def neighbours(self, node: int) -> IntArray:
        return self.targets[self.offsets[node] : self.offsets[node + 1]]

    def expand(self, frontier: IntArray) -> tuple[IntArray, IntArray]:
        """(origin, neighbour) pairs of every edge leaving the frontier, in one vectorised gather."""
        starts = self.offsets[frontier]
        counts = self.offsets[frontier + 1] - starts
        total = int(counts.sum())
        if total == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        ends = np.cumsum(counts)
        positions = np.repeat(starts - ends + counts, counts) + np.arange(total, dtype=np.int64)
        return np.repeat(frontier, counts), self.targets[positions]


def topological_levels(
    nodes: int, src: IntArray, dst: IntArray, alive: BoolArray, unit: IntArray
) -> tuple[IntArray, IntArray]:
    """Kahn's algorithm, a level at a time. Returns each node's level (-1 for dead nodes and for
    nodes on or behind a cycle) and, in the same sweep, the longest ``unit``-weighted path that
    ends just before each node (e.g. how many units of work come before it)."""
    level = np.full(nodes, -1, dtype=np.int64)
    before = np.zeros(nodes, dtype=np.int64)
    indegree = np.bincount(dst, minlength=nodes)
    successors = Csr.of(nodes, src, dst)
    slot = np.zeros(nodes, dtype=np.int64)
    frontier = np.flatnonzero((indegree == 0) & alive)
    k = 0
    while frontier.size:
        level[frontier] = k
        origin, succ = successors.expand(frontier)
        if not succ.size:
            break
        np.maximum.at(before, succ, before[origin] + unit[origin])
        np.subtract.at(indegree, succ, 1)
        freed = succ[indegree[succ] == 0]
        frontier = _distinct(freed, slot)
        k += 1
    return level, before


def _distinct(values: IntArray, slot: IntArray) -> IntArray:
    """The distinct values, without sorting (``slot`` is scratch space as long as the node count)."""
    positions = np.arange(values.size, dtype=np.int64)
    slot[values] = positions
    distinct: IntArray = values[slot[values] == positions]
    return distinct


@dataclass(frozen=True)
class LevelledEdges:
    """Edges sorted by the level of one end (``key``) and then by the node of the other end
    (``group``), with the slices of each level and of each run of equal ``group`` inside it."""

    key: IntArray
    group: IntArray
    level_starts: IntArray  # first edge of each non-empty level, in processing order, plus the end
    run_starts: IntArray  # first edge of each run of equal (level, group)

    @classmethod
    def sort(cls, key: IntArray, group: IntArray, key_level: IntArray, *, descending: bool) -> LevelledEdges:
        lev = -key_level if descending else key_level
        span = int(group.max()) + 1 if group.size else 1
        order = np.argsort((lev - lev.min(initial=0)) * span + group)  # order inside a run does not matter
        key, group, lev = key[order], group[order], lev[order]
        if not key.size:
            empty = np.zeros(0, dtype=np.int64)
            return cls(key, group, np.zeros(1, dtype=np.int64), empty)
        level_change = np.flatnonzero(lev[1:] != lev[:-1]) + 1
        run_change = np.flatnonzero((lev[1:] != lev[:-1]) | (group[1:] != group[:-1])) + 1
        level_starts = np.concatenate(([0], level_change, [key.size])).astype(np.int64)
        run_starts = np.concatenate(([0], run_change)).astype(np.int64)
        return cls(key, group, level_starts, run_starts)

    def only(self, keep: BoolArray) -> LevelledEdges:
        """The same order restricted to the edges where ``keep`` holds (runs and levels recomputed)."""
        if keep.all():
            return self
        positions = np.flatnonzero(keep)
        key, group = self.key[positions], self.group[positions]
        if not key.size:
            empty = np.zeros(0, dtype=np.int64)
            return LevelledEdges(key, group, np.zeros(1, dtype=np.int64), empty)
        # A kept edge opens a level (or a run) when the nearest opener at or before it in the full
        # order is later than the previous kept edge.
        level_of = np.searchsorted(self.level_starts, positions, side="right") - 1
        run_of = np.searchsorted(self.run_starts, positions, side="right") - 1
        level_open = np.concatenate(([True], level_of[1:] != level_of[:-1]))
        run_open = np.concatenate(([True], run_of[1:] != run_of[:-1]))
        level_starts = np.concatenate((np.flatnonzero(level_open), [key.size])).astype(np.int64)
        return LevelledEdges(key, group, level_starts, np.flatnonzero(run_open).astype(np.int64))

    def levels(self) -> list[tuple[int, int, IntArray]]:
        """Per level: the edge slice [a, b) and the starts of its runs, relative to a."""
        bounds = self.level_starts
        runs = self.run_starts
        cuts = np.searchsorted(runs, bounds)
        out: list[tuple[int, int, IntArray]] = []
        for i in range(bounds.size - 1):
            a, b = int(bounds[i]), int(bounds[i + 1])
            out.append((a, b, runs[cuts[i] : cuts[i + 1]] - a))
        return out


def longest_paths_forward(
    nodes: int, edges: LevelledEdges, weight: FloatArray, unit: IntArray
) -> tuple[FloatArray, IntArray]:
    """For each node, the heaviest path that ends just before it: by ``weight`` and by ``unit``.

    ``edges`` are keyed by their origin's level (ascending) and grouped by their target."""
    best = np.zeros(nodes, dtype=np.float64)
    best_units = np.zeros(nodes, dtype=np.int64)
    for a, b, runs in edges.levels():
        origin, target = edges.key[a:b], edges.group[a:b]
        heads = target[runs]
        alone = runs.size == origin.size
        best[heads] = np.maximum(best[heads], _reduce(np.maximum, best[origin] + weight[origin], runs, alone))
        best_units[heads] = np.maximum(
            best_units[heads], _reduce(np.maximum, best_units[origin] + unit[origin], runs, alone)
        )
    return best, best_units


def longest_paths_backward(
    nodes: int, edges: LevelledEdges, weight: FloatArray, unit: IntArray, marks: WordArray | None
) -> tuple[FloatArray, IntArray, WordArray | None]:
    """For each node, the heaviest path that starts at it, its own weight included (by ``weight``
    and by ``unit``), and the union of the ``marks`` (bit sets, one row per node) of the node and of
    every node reachable from it.

    ``edges`` are keyed by their target's level (descending) and grouped by their origin."""
    tail = np.zeros(nodes, dtype=np.float64)
    tail_units = np.zeros(nodes, dtype=np.int64)
    reach = None if marks is None else marks.copy()  # a node's own mark stays in its row
    for a, b, runs in edges.levels():
        target, origin = edges.key[a:b], edges.group[a:b]
        heads = origin[runs]
        alone = runs.size == target.size  # every origin has one edge here: nothing to reduce
        tail[heads] = np.maximum(tail[heads], _reduce(np.maximum, tail[target] + weight[target], runs, alone))
        tail_units[heads] = np.maximum(
            tail_units[heads], _reduce(np.maximum, tail_units[target] + unit[target], runs, alone)
        )
        if reach is not None:
            # np.take and one assignment: much faster on 2-D rows than fancy indexing with |=
            rows = _reduce(np.bitwise_or, np.take(reach, target, axis=0), runs, alone)
            rows |= np.take(reach, heads, axis=0)
            reach[heads] = rows
    return tail + weight, tail_units + unit, reach


def _reduce(ufunc: np.ufunc, values: npt.NDArray[Any], runs: IntArray, alone: bool) -> npt.NDArray[Any]:
    return values if alone else ufunc.reduceat(values, runs, axis=0)


def popcount_rows(words: WordArray) -> IntArray:
    """Number of set bits in each row of a 2-D uint64 array."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words).sum(axis=1, dtype=np.int64)  # type: ignore[no-any-return]
    as_bytes = words.view(np.uint8).reshape(words.shape[0], -1)  # numpy < 2.0
    return np.unpackbits(as_bytes, axis=1).sum(axis=1, dtype=np.int64)  # type: ignore[no-any-return]


def reachable(graph: Csr, sources: IntArray, alive: BoolArray) -> BoolArray:
    """Every alive node reachable from ``sources`` (not the sources themselves, unless on a path)."""
    seen = np.zeros(alive.size, dtype=bool)
    frontier = sources
    while frontier.size:
        _, succ = graph.expand(frontier)
        succ = succ[alive[succ] & ~seen[succ]]
        succ = np.unique(succ)
        seen[succ] = True
        frontier = succ
    return seen
