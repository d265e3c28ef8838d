"""TaskGraph: critical path, fan-out, depth, waves, cycles, caching, and the query_graph tool."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from conftest import diamond_plan, make
from mcp import Client

from jetpack.actor import Actor
from jetpack.clock import ManualClock
from jetpack.config import Settings
from jetpack.errors import InvalidInput, NotFound
from jetpack.server import IdentityDefaults, build_parts, create_server
from jetpack.store import DataLayer
from jetpack.swarm import graph as graph_module
from jetpack.swarm.graph import TaskGraph, task_graph
from jetpack.swarm.graph_queries import query_graph
from jetpack.tasks import (
    NewTask,
    QueueContext,
    add_dependency,
    cancel_task,
    claim_task,
    complete_task,
)

pytestmark = [
    pytest.mark.both_adapters,  # the embedded file and a real tursodb server
    pytest.mark.usefixtures("fresh_graph_cache"),
]


def ids_of(graph: TaskGraph, positions: list[int]) -> set[str]:
    return {graph.structure.ids[p] for p in positions}


@pytest.fixture
def diamond(queue: QueueContext) -> dict[str, str]:
    """a(10) → b(30), c(5) → d(10); e(40) blocks the epic, whose leaf e2 also waits on a."""
    return make(queue, diamond_plan())


def test_critical_path_is_the_heaviest_chain_of_estimates(store: DataLayer, diamond: dict[str, str]) -> None:
    graph = task_graph(store)
    assert graph.critical_path() == [diamond["a"], diamond["b"], diamond["d"]]
    assert graph.critical_length == 50 and graph.weighted_by == "estimate_minutes"
    on_path = {t for t in diamond.values() if graph.critical[graph.position(t)]}
    assert on_path == {diamond["a"], diamond["b"], diamond["d"]}  # e → e1 is 45: not critical


def test_without_estimates_the_critical_path_counts_tasks(queue: QueueContext, store: DataLayer) -> None:
    ids = make(
        queue,
        [
            NewTask(title="x", ref="x"),
            NewTask(title="y", ref="y", depends_on=["x"]),
            NewTask(title="z", ref="z", depends_on=["y"]),
            NewTask(title="w", ref="w", depends_on=["x"]),
        ],
    )
    graph = task_graph(store)
    assert graph.weighted_by == "task_count" and graph.critical_length == 3
    assert graph.critical_path() == [ids["x"], ids["y"], ids["z"]]


def test_a_missing_estimate_weighs_the_median_of_the_others(queue: QueueContext, store: DataLayer) -> None:
    ids = make(
        queue,
        [
            NewTask(title="p", ref="p", estimate_minutes=10),
            NewTask(title="q", ref="q", estimate_minutes=30),
            NewTask(title="r", ref="r", estimate_minutes=20),
            NewTask(title="unknown", ref="u", depends_on=["p"]),
        ],
    )
    graph = task_graph(store)
    assert graph.weight[graph.position(ids["u"])] == 20
    assert graph.critical_length == 30  # q alone (30) = p + unknown (10 + 20); both are critical
    assert graph.critical[graph.position(ids["q"])] and graph.critical[graph.position(ids["u"])]


def test_fanout_counts_transitive_dependants_through_epics(store: DataLayer, diamond: dict[str, str]) -> None:
    graph = task_graph(store)
    fanout = {ref: int(graph.fanout[graph.position(task)]) for ref, task in diamond.items()}
    # a: b, c, d and e2; e holds back the epic, so both of its leaves; the epic itself: nothing
    assert fanout == {"a": 4, "b": 1, "c": 1, "d": 0, "e": 2, "epic": 0, "e1": 0, "e2": 0}
    assert graph.fanout_exact
    assert ids_of(graph, graph.dependents(graph.position(diamond["a"]))) == {
        diamond["b"],
        diamond["c"],
        diamond["d"],
        diamond["e2"],
    }


def test_blockers_include_those_inherited_from_ancestors(store: DataLayer, diamond: dict[str, str]) -> None:
    graph = task_graph(store)
    assert ids_of(graph, graph.blockers(graph.position(diamond["e2"]))) == {diamond["a"], diamond["e"]}
    assert ids_of(graph, graph.blockers(graph.position(diamond["d"]))) == {diamond["a"], diamond["b"], diamond["c"]}


def test_depth_waves_roots_and_sinks(store: DataLayer, diamond: dict[str, str]) -> None:
    graph = task_graph(store)
    depth = {ref: int(graph.structure.depth[graph.position(task)]) for ref, task in diamond.items()}
    assert depth == {"a": 0, "b": 1, "c": 1, "d": 2, "e": 0, "epic": 1, "e1": 1, "e2": 1}
    assert graph.normalised_depth(graph.position(diamond["d"])) == 1.0
    waves = [set(w) for w in graph.waves()]
    assert waves == [
        {diamond["a"], diamond["e"]},
        {diamond["b"], diamond["c"], diamond["e1"], diamond["e2"]},
        {diamond["d"]},
    ]
    assert set(graph.roots()) == {diamond["a"], diamond["e"]}
    assert set(graph.sinks()) == {diamond["d"], diamond["e1"], diamond["e2"]}


def test_the_score_follows_the_published_formula(store: DataLayer, diamond: dict[str, str]) -> None:
    graph = task_graph(store)
    a = graph.score(graph.position(diamond["a"]))
    assert (a.critical, a.dependents_bonus, a.shallow_bonus, a.total) == (100, 40, 20, 160)
    c = graph.score(graph.position(diamond["c"]))
    assert (c.critical, c.dependents_bonus, c.shallow_bonus) == (0, 10, 10)  # depth 1 of 2


def test_finished_work_leaves_the_figures(queue: QueueContext, store: DataLayer, diamond: dict[str, str]) -> None:
    worker = Actor("w")
    claim_task(queue, worker, diamond["e"])
    complete_task(queue, worker, diamond["e"], "done")
    graph = task_graph(store)
    assert graph.fanout[graph.position(diamond["e"])] == 0
    assert diamond["e"] not in {t for w in graph.waves() for t in w}
    assert graph.critical_path() == [diamond["a"], diamond["b"], diamond["d"]]


def test_the_graph_is_recomputed_only_when_it_changed(
    queue: QueueContext, store: DataLayer, diamond: dict[str, str]
) -> None:
    first = task_graph(store)
    assert task_graph(store) is first  # nothing changed: the cached analysis
    claim_task(queue, Actor("w"), diamond["a"])
    after_claim = task_graph(store)
    assert after_claim is not first and after_claim.structure is first.structure  # states only
    assert after_claim.fanout is first.fanout  # a claim leaves the unfinished work as it was
    assert after_claim.state[after_claim.position(diamond["a"])] != first.state[first.position(diamond["a"])]
    complete_task(queue, Actor("w"), diamond["a"], "done")
    after_done = task_graph(store)
    assert after_done.structure is first.structure and after_done.fanout is not first.fanout
    assert after_done.fanout[after_done.position(diamond["a"])] == 0
    add_dependency(queue, Actor("planner"), diamond["e1"], diamond["c"])
    after_edge = task_graph(store)
    assert after_edge.structure is not first.structure
    assert ids_of(after_edge, after_edge.blockers(after_edge.position(diamond["e1"]))) == {diamond["c"], diamond["e"]}
    cancel_task(queue, Actor("planner"), diamond["c"], "not needed")
    after_cancel = task_graph(store)
    assert after_cancel.structure is not after_edge.structure
    assert not after_cancel.structure.live[after_cancel.position(diamond["c"])]


def test_a_cycle_written_behind_the_services_back_is_reported(
    queue: QueueContext, store: DataLayer, diamond: dict[str, str]
) -> None:
    store.execute(
        "INSERT INTO dependencies(task_id, depends_on, kind, created_by, created_at) VALUES (:t, :d, 'blocks', 'x', 0)",
        {"t": diamond["a"], "d": diamond["d"]},
    )
    store.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'graph_version'")
    graph = task_graph(store)
    assert graph.structure.cycles
    assert set(graph.structure.cycles[0]) >= {diamond["a"], diamond["d"]}
    stats = query_graph(queue, Actor("w"), "stats").stats
    assert stats is not None and stats.cycles and stats.stuck >= 4


def test_sampled_fanout_estimates_large_graphs(
    queue: QueueContext, store: DataLayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = make(
        queue, [NewTask(title="hub", ref="hub"), *(NewTask(title=f"n{i}", depends_on=["hub"]) for i in range(300))]
    )
    monkeypatch.setattr(graph_module, "FANOUT_BUDGET_BYTES", 8 * 2 * 302)  # one word per node: 64 sampled leaves
    graph = task_graph(store)
    assert not graph.fanout_exact and graph.fanout_sample == 64
    assert abs(graph.fanout[graph.position(ids["hub"])] - 300) <= 3  # the 64 sampled leaves, scaled to 301


def reference(tasks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The figures by brute force, straight from the definitions (for random graphs)."""
    by_id = {t["id"]: t for t in tasks}
    children: dict[str, list[str]] = {}
    for t in tasks:
        if t["parent"]:
            children.setdefault(t["parent"], []).append(t["id"])
    leaves = [t["id"] for t in tasks if t["id"] not in children]

    def leaves_under(task: str) -> set[str]:
        if task not in children:
            return {task}
        return set().union(*(leaves_under(c) for c in children[task]))

    def lineage(task: str) -> list[str]:
        chain = [task]
        while by_id[chain[-1]]["parent"]:
            chain.append(by_id[chain[-1]]["parent"])
        return chain

    waits = {leaf: set().union(*(leaves_under(b) for a in lineage(leaf) for b in by_id[a]["deps"])) for leaf in leaves}
    memo: dict[str, set[str]] = {}

    def before(leaf: str) -> set[str]:  # every leaf it waits on, transitively
        if leaf not in memo:
            memo[leaf] = set(waits[leaf]).union(*(before(w) for w in waits[leaf]))
        return memo[leaf]

    finish: dict[str, float] = {}

    def earliest_finish(leaf: str) -> float:
        if leaf not in finish:
            finish[leaf] = by_id[leaf]["minutes"] + max((earliest_finish(w) for w in waits[leaf]), default=0)
        return finish[leaf]

    chain: dict[str, int] = {}

    def units_before(leaf: str) -> int:
        if leaf not in chain:
            chain[leaf] = max((units_before(w) + 1 for w in waits[leaf]), default=0)
        return chain[leaf]

    return {
        "fanout": {leaf: sum(1 for other in leaves if leaf in before(other)) for leaf in leaves},
        "depth": {leaf: units_before(leaf) for leaf in leaves},
        "critical": max(earliest_finish(leaf) for leaf in leaves),
    }


@pytest.mark.parametrize("seed", range(6))
def test_array_passes_agree_with_brute_force_on_random_hierarchical_dags(
    queue: QueueContext, store: DataLayer, seed: int
) -> None:
    rng = random.Random(seed)
    specs: list[NewTask] = []
    for r in range(8):  # 8 epics of 1-4 leaves; each epic or leaf may wait on earlier ones
        earlier = [s.ref for s in specs] + [c.ref for s in specs for c in s.children]
        kids = [
            NewTask(
                title=f"r{r}k{k}",
                ref=f"r{r}k{k}",
                estimate_minutes=rng.randint(1, 30),
                depends_on=rng.sample(earlier, min(len(earlier), rng.randint(0, 2))),
            )
            for k in range(rng.randint(1, 4))
        ]
        deps = rng.sample(earlier, min(len(earlier), rng.randint(0, 1)))
        specs.append(NewTask(title=f"r{r}", ref=f"r{r}", children=kids, depends_on=[d for d in deps if d]))
    ids = make(queue, specs)
    refs = {v: k for k, v in ids.items()}
    flat = [{"id": f"r{r}", "parent": None, "deps": specs[r].depends_on, "minutes": 0} for r in range(len(specs))] + [
        {"id": c.ref, "parent": f"r{r}", "deps": c.depends_on, "minutes": c.estimate_minutes}
        for r, s in enumerate(specs)
        for c in s.children
    ]
    expected = reference(flat)
    graph = task_graph(store)
    leaves = [p for p in range(graph.structure.size) if graph.structure.leaf[p]]
    assert {refs[graph.structure.ids[p]]: int(graph.fanout[p]) for p in leaves} == expected["fanout"]
    assert {refs[graph.structure.ids[p]]: int(graph.structure.depth[p]) for p in leaves} == expected["depth"]
    assert graph.critical_length == expected["critical"]


# ---------------------------------------------------------------------------------------------
# query_graph, the service and the MCP tool


def test_query_graph_errors_say_what_to_do(queue: QueueContext, diamond: dict[str, str]) -> None:
    me = Actor("w")
    with pytest.raises(InvalidInput, match="choose one of critical_path, next, blockers, dependents, waves, stats"):
        query_graph(queue, me, "shortest_path")
    with pytest.raises(InvalidInput, match="needs a task_id"):
        query_graph(queue, me, "blockers")
    with pytest.raises(NotFound, match="no task jp-zzzz"):
        query_graph(queue, me, "dependents", "jp-zzzz")
    with pytest.raises(InvalidInput, match="not a task id"):
        query_graph(queue, me, "dependents", "nonsense")


@pytest.fixture
def server(settings: Settings, store: DataLayer) -> Any:
    return create_server(build_parts(settings, store=store, clock=ManualClock(), identity=IdentityDefaults()))


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content[0].text  # type: ignore[union-attr]
    assert json.loads(result.content[0].text) == result.structured_content  # type: ignore[union-attr]
    assert result.structured_content is not None
    return result.structured_content


@pytest.mark.anyio
async def test_query_graph_tool_answers_every_kind(server: Any, protocol_mode: str) -> None:
    async with Client(server, mode=protocol_mode) as client:
        await call(client, "register_agent", name="planner", skills=["sql"])
        made = await call(
            client,
            "create_tasks",
            tasks=[
                {"title": "schema", "ref": "schema", "estimate_minutes": 20, "skills": ["sql"]},
                {"title": "api", "ref": "api", "depends_on": ["schema"], "estimate_minutes": 30},
                {"title": "ui", "ref": "ui", "depends_on": ["api"], "estimate_minutes": 30},
                {"title": "docs", "ref": "docs", "estimate_minutes": 5},
            ],
        )
        ids = {c["ref"]: c["id"] for c in made["created"]}
        path = await call(client, "query_graph", kind="critical_path")
        assert [t["id"] for t in path["tasks"]] == [ids["schema"], ids["api"], ids["ui"]]
        assert path["length"] == 80 and path["weighted_by"] == "estimate_minutes" and path["count"] == 3
        nxt = await call(client, "query_graph", kind="next")
        assert [t["id"] for t in nxt["tasks"]] == [ids["schema"], ids["docs"]]
        top = nxt["tasks"][0]
        assert top["critical"] and top["dependents"] == 2 and top["score"] == 140
        assert top["breakdown"] == {"critical_path": 100, "dependents": 20, "shallow": 20}
        blockers = await call(client, "query_graph", kind="blockers", task_id=ids["ui"])
        assert {t["id"] for t in blockers["tasks"]} == {ids["schema"], ids["api"]} and blockers["count"] == 2
        dependents = await call(client, "query_graph", kind="dependents", task_id=ids["schema"], limit=1)
        assert dependents["count"] == 2 and len(dependents["tasks"]) == 1 and dependents["truncated"]
        waves = await call(client, "query_graph", kind="waves")
        assert [w["count"] for w in waves["waves"]] == [2, 1, 1]
        stats = (await call(client, "query_graph", kind="stats"))["stats"]
        assert stats["work"] == 4 and stats["ready"] == 2 and stats["critical_path_steps"] == 3
        assert stats["bottlenecks"] == [{"id": ids["schema"], "dependents": 2}]
        assert stats["dependents_counted"] == "exact" and stats["max_parallelism"] == 2


@pytest.mark.anyio
async def test_next_never_offers_claimed_done_or_unfit_tasks(server: Any, protocol_mode: str) -> None:
    async with Client(server, mode=protocol_mode) as client:
        await call(client, "register_agent", name="coder", skills=[])
        made = await call(
            client,
            "create_tasks",
            tasks=[
                {"title": "one", "ref": "one"},
                {"title": "two", "ref": "two"},
                {"title": "three", "ref": "three"},
                {"title": "needs sql", "ref": "sql", "skills": ["sql"]},
            ],
        )
        ids = {c["ref"]: c["id"] for c in made["created"]}
        await call(client, "claim_task", task_id=ids["one"])
        await call(client, "claim_task", task_id=ids["two"])
        await call(client, "complete_task", task_id=ids["two"], summary="done")
        nxt = await call(client, "query_graph", kind="next")
        assert [t["id"] for t in nxt["tasks"]] == [ids["three"]] and nxt["count"] == 1


@pytest.mark.anyio
async def test_query_graph_tool_errors(server: Any) -> None:
    async with Client(server, mode="legacy") as client:
        bad = await client.call_tool("query_graph", {"kind": "everything"})
        assert bad.is_error and "critical_path" in bad.content[0].text  # type: ignore[union-attr]
        missing = await client.call_tool("query_graph", {"kind": "blockers", "task_id": "jp-zzzz"})
        assert missing.is_error and "no task jp-zzzz" in missing.content[0].text  # type: ignore[union-attr]
