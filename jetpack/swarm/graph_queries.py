"""The query_graph use case: compact answers about the task graph for agents and people."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from jetpack.actor import Actor
from jetpack.errors import InvalidInput
from jetpack.swarm.strategies import Strategy, rank, ready_candidates
from jetpack.tasks import QueueContext

if TYPE_CHECKING:  # the graph (numpy) is imported when a query first needs it, not at server start
    from jetpack.swarm.graph import TaskGraph

MAX_LIMIT = 100


class GraphKind(StrEnum):
    CRITICAL_PATH = "critical_path"  # the heaviest chain of unfinished work
    NEXT = "next"  # ready tasks for the caller, best first, with the score broken down
    BLOCKERS = "blockers"  # what a task waits on, transitively
    DEPENDENTS = "dependents"  # what waits on a task, transitively
    WAVES = "waves"  # the unfinished work in parallel waves
    STATS = "stats"  # the graph in figures


class ScoreBreakdown(BaseModel):
    critical_path: float = Field(description="+100 when the task is on the critical path.")
    dependents: float = Field(description="+10 per unfinished task that waits on it, transitively.")
    shallow: float = Field(description="+20 x (1 - depth / deepest depth).")


class GraphTask(BaseModel):
    id: str
    title: str | None = None
    state: str | None = None
    priority: int | None = None
    weight: float | None = Field(default=None, description="Its work: estimate minutes, or 1 per task.")
    score: float | None = None
    critical: bool = False
    dependents: int | None = None
    depth: int | None = None
    breakdown: ScoreBreakdown | None = None


class Wave(BaseModel):
    wave: int
    count: int
    tasks: list[str]


class Bottleneck(BaseModel):
    id: str
    dependents: int


class GraphStats(BaseModel):
    tasks: int = Field(description="Live (not cancelled) tasks.")
    work: int = Field(description="Live leaves: the tasks that are work.")
    unfinished: int = Field(description="Leaves not done yet.")
    ready: int
    max_depth: int
    critical_path_length: float
    critical_path_steps: int
    on_critical_path: int = Field(description="Unfinished leaves on some heaviest chain.")
    weighted_by: str
    waves: int
    max_parallelism: int = Field(description="The largest wave.")
    roots: int = Field(description="Unfinished work waiting on nothing unfinished.")
    sinks: int = Field(description="Unfinished work nothing unfinished waits on.")
    bottlenecks: list[Bottleneck] = []
    cycles: list[list[str]] = []
    stuck: int = Field(default=0, description="Tasks on or behind a cycle, left out of the figures.")
    dependents_counted: str = Field(description="'exact', or how large a sample estimated them.")
    computed_ms: float


class GraphAnswer(BaseModel):
    """One answer of query_graph; the fields present depend on ``kind``."""

    kind: GraphKind
    task_id: str | None = None
    count: int | None = Field(default=None, description="How many there are in all (tasks may be cut at limit).")
    length: float | None = None
    weighted_by: str | None = None
    tasks: list[GraphTask] | None = None
    waves: list[Wave] | None = None
    stats: GraphStats | None = None
    truncated: bool = False


def parse_kind(value: str) -> GraphKind:
    try:
        return GraphKind(value)
    except ValueError:
        raise InvalidInput(f"unknown kind {value!r}; choose one of {', '.join(k.value for k in GraphKind)}") from None


def query_graph(ctx: QueueContext, actor: Actor, kind: str, task_id: str | None = None, limit: int = 10) -> GraphAnswer:
    """Answer one question about the graph (recomputed only if it changed since the last question)."""
    chosen = parse_kind(kind)
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    needs_task = chosen in (GraphKind.BLOCKERS, GraphKind.DEPENDENTS)
    if needs_task and not task_id:
        raise InvalidInput(f"kind {chosen.value!r} needs a task_id: the task whose {chosen.value} you want")
    from jetpack.swarm.graph import require_known, task_graph

    graph = task_graph(ctx.store)
    if chosen is GraphKind.CRITICAL_PATH:
        return _critical_path(ctx, graph, limit)
    if chosen is GraphKind.NEXT:
        return _next(ctx, actor, graph, limit)
    if chosen is GraphKind.WAVES:
        return _waves(graph, limit)
    if chosen is GraphKind.STATS:
        return GraphAnswer(kind=chosen, stats=graph_stats(graph))
    assert task_id is not None
    position = require_known(graph, task_id)
    found = graph.blockers(position) if chosen is GraphKind.BLOCKERS else graph.dependents(position)
    ids = [graph.structure.ids[p] for p in found]
    return GraphAnswer(
        kind=chosen,
        task_id=task_id,
        count=len(ids),
        tasks=_described(ctx, ids[:limit]),
        truncated=len(ids) > limit,
    )


def _critical_path(ctx: QueueContext, graph: TaskGraph, limit: int) -> GraphAnswer:
    path = graph.critical_path()
    tasks = _described(ctx, path[:limit])
    for task in tasks:
        task.weight = float(graph.weight[graph.position(task.id)])
        task.critical = True
    return GraphAnswer(
        kind=GraphKind.CRITICAL_PATH,
        count=len(path),
        length=graph.critical_length,
        weighted_by=graph.weighted_by,
        tasks=tasks,
        truncated=len(path) > limit,
    )


def _next(ctx: QueueContext, actor: Actor, graph: TaskGraph, limit: int) -> GraphAnswer:
    candidates = rank(ctx, actor.skills, Strategy.GRAPH_PRIORITIZED, ready_candidates(ctx, actor))
    titles = _titles(ctx, [c.id for c in candidates[:limit]])
    tasks = []
    for candidate in candidates[:limit]:
        position = graph.structure.index.get(candidate.id)
        if position is None:
            continue  # created after the graph was read
        parts = graph.score(position)
        tasks.append(
            GraphTask(
                id=candidate.id,
                title=titles.get(candidate.id),
                priority=candidate.priority,
                score=round(parts.total, 2),
                critical=bool(graph.critical[position]),
                dependents=parts.dependents,
                depth=parts.depth,
                breakdown=ScoreBreakdown(
                    critical_path=parts.critical,
                    dependents=parts.dependents_bonus,
                    shallow=round(parts.shallow_bonus, 2),
                ),
            )
        )
    return GraphAnswer(kind=GraphKind.NEXT, count=len(candidates), tasks=tasks, truncated=len(candidates) > limit)


def _waves(graph: TaskGraph, limit: int) -> GraphAnswer:
    waves = graph.waves()
    return GraphAnswer(
        kind=GraphKind.WAVES,
        count=len(waves),
        waves=[Wave(wave=k, count=len(ids), tasks=ids[:limit]) for k, ids in enumerate(waves[:limit])],
        truncated=len(waves) > limit or any(len(ids) > limit for ids in waves[:limit]),
    )


def graph_stats(graph: TaskGraph) -> GraphStats:
    from jetpack.swarm.graph import READY

    s = graph.structure
    work = graph.work()
    waves = graph.waves()
    return GraphStats(
        tasks=int(s.live.sum()),
        work=int(s.leaf.sum()),
        unfinished=int(work.sum()),
        ready=int((graph.state[work] == READY).sum()),
        max_depth=s.max_depth,
        critical_path_length=graph.critical_length,
        critical_path_steps=len(graph.critical_path()),
        on_critical_path=int(graph.critical.sum()),
        weighted_by=graph.weighted_by,
        waves=len(waves),
        max_parallelism=max((len(w) for w in waves), default=0),
        roots=len(graph.roots()),
        sinks=len(graph.sinks()),
        bottlenecks=[Bottleneck(id=i, dependents=n) for i, n in graph.bottlenecks()],
        cycles=s.cycles,
        stuck=s.stuck,
        dependents_counted="exact"
        if graph.fanout_exact
        else f"estimated from a sample of {graph.fanout_sample} of {int(work.sum())} tasks",
        computed_ms=round(graph.computed_ms, 1),
    )


def _titles(ctx: QueueContext, ids: list[str]) -> dict[str, str]:
    return {row["id"]: row["title"] for row in ctx.rows_by_id(ids, "id, title").values()}


def _described(ctx: QueueContext, ids: list[str]) -> list[GraphTask]:
    rows: dict[str, Any] = ctx.rows_by_id(ids, "id, title, state, priority")
    return [
        GraphTask(id=i, title=rows[i]["title"], state=rows[i]["state"], priority=rows[i]["priority"])
        for i in ids
        if i in rows
    ]
