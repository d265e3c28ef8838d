"""TaskGraph: the live task DAG analysed for scheduling — critical path, fan-out, depth, waves.

**The graph.** Only leaves are work, and a parent's blockers hold back all its subtasks, so the
analysis runs on the graph the deadlock check uses (jetpack/tasks/graph.py), with two nodes per
live (non-cancelled) task, *start(t)* and *done(t)*:

* ``done(b) → start(t)`` for each ``blocks`` dependency of t on b;
* ``start(p) → start(c)`` and ``done(c) → done(p)`` for each live child c of p;
* ``start(t) → done(t)`` for a leaf, carrying the leaf's weight (its work).

A leaf u *waits on* a leaf v when done(v) reaches start(u): this covers inherited blockers and
blockers that are whole epics, without expanding either into leaf-to-leaf edges.

**What is computed.** On the whole live graph (structure, recomputed when tasks or ``blocks``
edges are added or tasks cancelled or reopened): topological levels, cycles, and each task's
*depth* — the most units of work on any chain of blockers before it (0 for a root) — and the
normalised depth, depth / the deepest leaf's depth. On the unfinished part (every other change):

* the *critical path*: the heaviest chain of unfinished leaves, weighted by ``estimate_minutes``
  (a leaf without an estimate weighs the median estimate; with no estimates at all every leaf
  weighs 1, so the path is counted in tasks), and which tasks lie on a heaviest chain;
* *fan-out*: how many unfinished leaves wait on each task, transitively — exact up to a few
  thousand unfinished leaves (bit sets), estimated from a fixed-seed sample of them above that;
* *waves*: wave k holds the leaves with k unfinished leaves on their longest chain of blockers
  (wave 0 is what is ready or held now); *roots* and *sinks* (unfinished work that waits on
  nothing unfinished, or that nothing unfinished waits on); *bottlenecks* (highest fan-out).

**Caching.** One TaskGraph per database per process, checked against a version read in one
cheap query (``graph_version``, the newest task row and the newest event: every state change
and every dependency leaves an event) and recomputed only when that changed — the structure
only when tasks or edges changed.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np

from jetpack.errors import InvalidInput
from jetpack.store import DataLayer
from jetpack.swarm.graph_passes import (
    BoolArray,
    FloatArray,
    IntArray,
    WordArray,
    longest_paths_backward,
    longest_paths_forward,
    popcount_rows,
    reachable,
)
from jetpack.swarm.graph_structure import (
    CANCELLED,
    DONE,
    READY,
    GraphVersion,
    Structure,
    changed_states,
    read_structure,
    read_version,
)

__all__ = ["READY", "ScoreParts", "TaskGraph", "forget_cached_graphs", "require_known", "task_graph"]

# Fan-out bit sets may use this much memory (one row of words per node); beyond it, a sample.
FANOUT_BUDGET_BYTES = 24 * 1024 * 1024
SAMPLE_SEED = 20_240_611

# The graph-prioritized score (docs/swarm.md).
CRITICAL_BONUS = 100.0
PER_DEPENDENT = 10.0
SHALLOW_BONUS = 20.0


@dataclass(frozen=True)
class ScoreParts:
    """The graph-prioritized score of one task, part by part."""

    critical: float
    dependents: int
    dependents_bonus: float
    depth: int
    shallow_bonus: float

    @property
    def total(self) -> float:
        return self.critical + self.dependents_bonus + self.shallow_bonus


@dataclass
class TaskGraph:
    """A snapshot of the analysed graph. Per-task arrays are indexed by position (``position(id)``);
    per-node arrays hold start(t) at t and done(t) at size + t."""

    version: GraphVersion
    structure: Structure
    state: IntArray
    unfinished: BoolArray
    weight: FloatArray  # per task: the leaf's work (0 for parents and finished tasks)
    weighted_by: str  # "estimate_minutes" or "task_count"
    node_before: FloatArray  # per node: heaviest unfinished work that must precede it
    node_after: FloatArray  # per node: heaviest unfinished work from it to the end, its own included
    after_units: IntArray  # per node: most unfinished leaves on a chain from it, its own included
    critical_length: float
    critical: BoolArray  # unfinished leaf on a heaviest chain
    wave: IntArray  # per task: unfinished leaves on its longest chain of blockers; -1 if finished
    fanout: IntArray  # per task: unfinished leaves waiting on it, transitively
    fanout_exact: bool
    fanout_sample: int
    computed_ms: float
    _path: list[str] | None = field(default=None, repr=False)
    _scores: FloatArray | None = field(default=None, repr=False)

    # -- per task -------------------------------------------------------------------------------

    def position(self, task_id: str) -> int:
        return self.structure.position(task_id)

    def normalised_depth(self, position: int) -> float:
        top = self.structure.max_depth
        return 0.0 if top == 0 else float(self.structure.depth[position]) / top

    def score(self, position: int) -> ScoreParts:
        """The graph-prioritized score: +100 on the critical path, +10 per transitive dependant,
        +20 x (1 - normalised depth)."""
        dependents = int(self.fanout[position])
        return ScoreParts(
            critical=CRITICAL_BONUS if self.critical[position] else 0.0,
            dependents=dependents,
            dependents_bonus=PER_DEPENDENT * dependents,
            depth=int(self.structure.depth[position]),
            shallow_bonus=SHALLOW_BONUS * (1.0 - self.normalised_depth(position)),
        )

    def scores(self) -> FloatArray:
        """Every task's score (the totals of :meth:`score`), computed once per snapshot."""
        if self._scores is None:
            top = self.structure.max_depth
            shallow = 1.0 - (self.structure.depth / top if top else np.zeros(self.structure.size))
            self._scores = CRITICAL_BONUS * self.critical + PER_DEPENDENT * self.fanout + SHALLOW_BONUS * shallow
        return self._scores

    # -- whole graph ----------------------------------------------------------------------------

    def critical_path(self) -> list[str]:
        """One heaviest chain of unfinished leaves, first to last (ties: the earliest created)."""
        if self._path is None:
            self._path = _walk_critical_path(self)
        return self._path

    def roots(self) -> list[str]:
        """Unfinished work that waits on nothing unfinished."""
        return self._ids(self.work() & (self.wave == 0))

    def sinks(self) -> list[str]:
        """Unfinished work that nothing unfinished waits on."""
        n = self.structure.size
        return self._ids(self.work() & (self.after_units[n:] == 1))

    def waves(self) -> list[list[str]]:
        work = self.work()
        if not work.any():
            return []
        out: list[list[str]] = [[] for _ in range(int(self.wave[work].max()) + 1)]
        for position in np.flatnonzero(work):
            out[int(self.wave[position])].append(self.structure.ids[position])
        return out

    def bottlenecks(self, limit: int = 5) -> list[tuple[str, int]]:
        """Unfinished tasks the most unfinished work waits on (at least 2); an ancestor is listed
        instead of its subtasks when they count the same."""
        ids = self.structure.ids
        candidates = np.flatnonzero(self.unfinished & (self.fanout >= 2))
        levels = np.array([ids[p].count(".") for p in candidates], dtype=np.int64)
        order = np.lexsort((candidates, levels, -self.fanout[candidates]))
        picked: list[tuple[str, int]] = []
        shown: dict[str, int] = {}
        for position in candidates[order]:
            task_id, count = ids[position], int(self.fanout[position])
            if any(shown.get(a) == count for a in _ancestors(task_id)):
                continue
            shown[task_id] = count
            picked.append((task_id, count))
            if len(picked) == limit:
                break
        return picked

    def blockers(self, position: int) -> list[int]:
        """Unfinished leaves the task waits on, transitively (its ancestors' blockers included)."""
        s = self.structure
        found = reachable(s.predecessors, np.array([position], dtype=np.int64), self._nodes_on())
        return [int(p) for p in np.flatnonzero(found[s.size :] & self.work()) if p != position]

    def dependents(self, position: int) -> list[int]:
        """Unfinished leaves that wait on the task, transitively."""
        s = self.structure
        found = reachable(s.successors, np.array([s.size + position], dtype=np.int64), self._nodes_on())
        return [int(p) for p in np.flatnonzero(found[: s.size] & self.work()) if p != position]

    def work(self) -> BoolArray:
        """Unfinished leaves."""
        return self.unfinished & self.structure.leaf

    def _nodes_on(self) -> BoolArray:
        return np.concatenate((self.unfinished, self.unfinished))

    def _ids(self, mask: BoolArray) -> list[str]:
        return [self.structure.ids[p] for p in np.flatnonzero(mask)]


def _ancestors(task_id: str) -> list[str]:
    parts = task_id.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


# ---------------------------------------------------------------------------------------------
# Analysis of the unfinished work


def analyse(structure: Structure, states: IntArray, version: GraphVersion, started: float) -> TaskGraph:
    """The state-dependent figures: everything about the unfinished work."""
    s = structure
    n = s.size
    unfinished = unfinished_tasks(s, states)
    work = unfinished & s.leaf
    weight, weighted_by = _weights(s.estimate, work)
    node_weight = np.concatenate((np.zeros(n), weight))
    node_unit = np.concatenate((np.zeros(n, dtype=np.int64), work.astype(np.int64)))
    on = np.concatenate((unfinished, unfinished))
    forward = s.forward.only(on[s.forward.key] & on[s.forward.group])
    backward = s.backward.only(on[s.backward.key] & on[s.backward.group])
    before, before_units = longest_paths_forward(2 * n, forward, node_weight, node_unit)
    marks, sample, exact = _fanout_marks(n, work)
    after, after_units, reach = longest_paths_backward(2 * n, backward, node_weight, node_unit, marks)
    length = float((before + node_weight)[on].max()) if on.any() else 0.0
    through = before[n:] + after[n:]  # heaviest chain through done(t)
    critical = work & np.isclose(through, length, rtol=1e-9, atol=1e-9) & (length > 0)
    if reach is None:
        fanout = np.zeros(n, dtype=np.int64)
    else:
        counted = popcount_rows(reach[n:])
        total = int(np.count_nonzero(work))
        fanout = counted if exact else np.rint(counted * (total / sample)).astype(np.int64)
    fanout[~unfinished] = 0
    return TaskGraph(
        version=version,
        structure=s,
        state=states,
        unfinished=unfinished,
        weight=weight,
        weighted_by=weighted_by,
        node_before=before,
        node_after=after,
        after_units=after_units,
        critical_length=length,
        critical=critical,
        wave=np.where(work, before_units[:n], -1),
        fanout=fanout,
        fanout_exact=exact,
        fanout_sample=sample,
        computed_ms=(time.perf_counter() - started) * 1000,
    )


def unfinished_tasks(structure: Structure, states: IntArray) -> BoolArray:
    """Live tasks not done (and not on or behind a cycle): the work the figures are about."""
    n = structure.size
    settled = (structure.level[:n] >= 0) & (structure.level[n:] >= 0)
    unfinished: BoolArray = structure.live & (states != DONE) & settled
    return unfinished


def _weights(estimate: FloatArray, work: BoolArray) -> tuple[FloatArray, str]:
    known = estimate[work & ~np.isnan(estimate)]
    if not known.size:
        return np.where(work, 1.0, 0.0), "task_count"
    fill = float(np.median(known))
    return np.where(work, np.where(np.isnan(estimate), fill, estimate), 0.0), "estimate_minutes"


def _fanout_marks(n: int, work: BoolArray) -> tuple[WordArray | None, int, bool]:
    """Bit sets marking each counted leaf at its start node: every unfinished leaf when the bit
    sets fit the memory budget, else a fixed-seed sample of them."""
    targets = np.flatnonzero(work)
    if not targets.size:
        return None, 0, True
    words_allowed = max(1, FANOUT_BUDGET_BYTES // (8 * 2 * n))
    exact = targets.size <= 64 * words_allowed
    if not exact:
        rng = np.random.default_rng(SAMPLE_SEED)
        targets = np.sort(rng.choice(targets, size=64 * words_allowed, replace=False))
    words = -(-targets.size // 64)
    marks = np.zeros((2 * n, words), dtype=np.uint64)
    columns = np.arange(targets.size)
    marks[targets, columns // 64] |= np.left_shift(np.uint64(1), (columns % 64).astype(np.uint64))
    return marks, int(targets.size), exact


def _walk_critical_path(graph: TaskGraph) -> list[str]:
    """Follow nodes whose heaviest chain through them is the critical length, from a node with
    nothing before it, always to the lowest-numbered such successor."""
    s = graph.structure
    n = s.size
    length = graph.critical_length
    if length <= 0:
        return []
    on = np.concatenate((graph.unfinished, graph.unfinished))
    node_weight = np.concatenate((np.zeros(n), graph.weight))
    before, after = graph.node_before, graph.node_after
    tight = on & np.isclose(before + after, length, rtol=1e-9, atol=1e-9)
    firsts = np.flatnonzero(tight & (before == 0))
    if not firsts.size:
        return []
    node = int(firsts[0])
    path: list[str] = []
    while True:
        if node >= n and graph.weight[node - n] > 0:
            path.append(s.ids[node - n])
        reached = before[node] + node_weight[node]
        succ = s.successors.neighbours(node)
        succ = succ[tight[succ] & np.isclose(before[succ], reached, rtol=1e-9, atol=1e-9)]
        if not succ.size:
            return path
        node = int(succ.min())


# ---------------------------------------------------------------------------------------------
# The per-process cache


_CACHE_SIZE = 8
_cache: OrderedDict[str, TaskGraph] = OrderedDict()
_lock = threading.Lock()


def task_graph(store: DataLayer) -> TaskGraph:
    """The analysed graph of this database, recomputed only if the graph changed since the last call."""
    version = read_version(store)
    key = store.location
    with _lock:
        cached = _cache.get(key)
        if cached is not None and cached.version == version:
            _cache.move_to_end(key)
            return cached
        started = time.perf_counter()
        graph = None
        if cached is not None and cached.version.structural == version.structural:
            graph = _refresh_states(store, cached, version, started)
        if graph is None:
            structure, states = read_structure(store, version.structural)
            graph = analyse(structure, states, version, started)
        _cache[key] = graph
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
        return graph


def _refresh_states(store: DataLayer, cached: TaskGraph, version: GraphVersion, started: float) -> TaskGraph | None:
    """Only states changed: apply them (from the event log) and re-analyse only if the unfinished
    work changed — a claim does not, a completion does. None when the structure moved after all
    (a task was cancelled or un-cancelled, which changes the graph's shape)."""
    s = cached.structure
    states = changed_states(store, s, cached.state, cached.version.last_event, version.last_event)
    if states is None or not np.array_equal(states != CANCELLED, s.live):
        return None
    if np.array_equal(unfinished_tasks(s, states), cached.unfinished):
        return replace(cached, version=version, state=states, computed_ms=(time.perf_counter() - started) * 1000)
    return analyse(s, states, version, started)


def forget_cached_graphs() -> None:
    """Drop every cached graph (tests)."""
    with _lock:
        _cache.clear()


def require_known(graph: TaskGraph, task_id: str) -> int:
    """The task's position, or a clear error for an unknown or cancelled task."""
    position = graph.position(task_id)
    if not graph.structure.live[position]:
        raise InvalidInput(f"{task_id} is cancelled, so it is not part of the graph; reopen it first")
    return position
