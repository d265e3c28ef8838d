"""Dashboard views of the task structure: the laid-out dependency graph and the progress tree."""

from __future__ import annotations

import random
from itertools import combinations

import pytest
from conftest import diamond_plan, make

from jetpack.actor import Actor
from jetpack.dashboard.layout import TITLE_MAX, GraphLayout, GraphNode, graph_layout
from jetpack.dashboard.tree import TreeNode, task_tree
from jetpack.errors import InvalidInput
from jetpack.store import DataLayer
from jetpack.swarm.graph import task_graph
from jetpack.tasks import NewTask, QueueContext, cancel_task, claim_task, complete_task, create_tasks

both_adapters = pytest.mark.both_adapters  # the SQL must suit a libSQL server too
PLANNER = Actor("planner")
pytestmark = pytest.mark.usefixtures("fresh_graph_cache")


@pytest.fixture
def plan(queue: QueueContext) -> dict[str, str]:
    """a(10) → b(30), c(5) → d(10); e(40) blocks the epic, whose leaf e2 also waits on a; x alone."""
    return make(queue, [*diamond_plan(), NewTask(title="x " + "long title " * 10, ref="x")])


def by_id(layout: GraphLayout) -> dict[str, GraphNode]:
    return {n["id"]: n for n in layout["nodes"]}


def overlapping(one: GraphNode, other: GraphNode) -> bool:
    return (
        one["x"] < other["x"] + other["w"]
        and other["x"] < one["x"] + one["w"]
        and one["y"] < other["y"] + other["h"]
        and other["y"] < one["y"] + one["h"]
    )


def assert_drawable(layout: GraphLayout) -> None:
    """Every edge runs left to right, no two nodes overlap, and all lie inside the drawing."""
    nodes = by_id(layout)
    for edge in layout["edges"]:
        assert nodes[edge["from"]]["x"] + nodes[edge["from"]]["w"] < nodes[edge["to"]]["x"], edge
    assert not [(a["id"], b["id"]) for a, b in combinations(layout["nodes"], 2) if overlapping(a, b)]
    for node in layout["nodes"]:
        assert 0 <= node["x"] <= layout["width"] - node["w"]
        assert 0 <= node["y"] <= layout["height"] - node["h"]


@both_adapters
def test_the_graph_has_every_live_task_and_every_blocks_edge(
    queue: QueueContext, plan: dict[str, str], alice: Actor
) -> None:
    cancelled = make(queue, [NewTask(title="gone", ref="gone", depends_on=[plan["a"]])])["gone"]
    cancel_task(queue, alice, cancelled, "not needed")
    layout = graph_layout(queue.store)
    assert set(by_id(layout)) == set(plan.values())
    edges = {(e["from"], e["to"]) for e in layout["edges"]}
    assert edges == {
        (plan["a"], plan["b"]),
        (plan["a"], plan["c"]),
        (plan["b"], plan["d"]),
        (plan["c"], plan["d"]),
        (plan["e"], plan["epic"]),
        (plan["a"], plan["e2"]),
    }
    assert layout["truncated"] is False
    title = by_id(layout)[plan["x"]]["title"]
    assert len(title) == TITLE_MAX and title.endswith("…")


@both_adapters
def test_layers_follow_the_edges_and_nodes_never_overlap(queue: QueueContext, plan: dict[str, str]) -> None:
    layout = graph_layout(queue.store)
    assert_drawable(layout)
    nodes = by_id(layout)
    assert nodes[plan["a"]]["x"] == nodes[plan["e"]]["x"] == 0  # sources in the first layer
    assert nodes[plan["b"]]["x"] == nodes[plan["c"]]["x"]  # one chain of edges before each


@both_adapters
def test_critical_nodes_and_edges_are_the_task_graphs_critical_path(queue: QueueContext, plan: dict[str, str]) -> None:
    layout = graph_layout(queue.store)
    path = task_graph(queue.store).critical_path()
    assert path == layout["critical_path"] == [plan["a"], plan["b"], plan["d"]]
    assert {n["id"] for n in layout["nodes"] if n["critical"]} == set(path)
    assert {(e["from"], e["to"]) for e in layout["edges"] if e["critical"]} == {
        (plan["a"], plan["b"]),
        (plan["b"], plan["d"]),
    }


@both_adapters
def test_a_graph_over_the_limit_keeps_the_unfinished_work(
    queue: QueueContext, plan: dict[str, str], alice: Actor
) -> None:
    for ref in ("a", "e"):
        claim_task(queue, alice, plan[ref])
        complete_task(queue, alice, plan[ref], "done")
    layout = graph_layout(queue.store, limit=5)
    kept = set(by_id(layout))
    assert layout["truncated"] is True and len(kept) == 5
    assert plan["a"] not in kept and plan["e"] not in kept
    assert set(layout["critical_path"]) <= kept  # the critical path is kept first
    assert all(e["from"] in kept and e["to"] in kept for e in layout["edges"])
    assert_drawable(layout)


def test_the_limit_must_be_positive(store: DataLayer) -> None:
    with pytest.raises(InvalidInput, match="limit must be from 1"):
        graph_layout(store, limit=0)


def test_an_empty_project_draws_nothing(store: DataLayer) -> None:
    assert graph_layout(store) == {
        "nodes": [],
        "edges": [],
        "width": 0,
        "height": 0,
        "critical_path": [],
        "truncated": False,
    }


def test_two_thousand_tasks_are_laid_out_and_stay_near_square(queue: QueueContext) -> None:
    rng = random.Random(7)
    specs = [
        NewTask(
            title=f"task {i}",
            ref=f"t{i}",
            estimate_minutes=rng.randint(1, 60),
            depends_on=[f"t{j}" for j in rng.sample(range(max(0, i - 50), i), min(i, rng.choice([0, 1, 2, 3])))],
        )
        for i in range(2000)
    ]
    create_tasks(queue, PLANNER, specs)
    layout = graph_layout(queue.store)  # its time is measured by benchmarks/bench_dashboard.py
    assert len(layout["nodes"]) == 2000
    nodes = by_id(layout)
    assert all(nodes[e["from"]]["x"] < nodes[e["to"]]["x"] for e in layout["edges"])
    assert len({(n["x"], n["y"]) for n in layout["nodes"]}) == 2000
    assert layout["height"] < 100 * 60  # a wide layer wraps into columns


# --- the tree ----------------------------------------------------------------------------------


def find(nodes: list[TreeNode], title: str) -> TreeNode:
    pending = list(nodes)
    while pending:
        node = pending.pop()
        if node["title"] == title:
            return node
        pending.extend(node["children"])
    raise AssertionError(f"no node titled {title}")


@both_adapters
def test_tree_counts_done_and_live_leaves_beneath_each_task(queue: QueueContext, alice: Actor) -> None:
    ids = make(
        queue,
        [
            NewTask(
                title="epic",
                children=[
                    NewTask(title="one", ref="one"),
                    NewTask(title="two", ref="two"),
                    NewTask(title="sub", children=[NewTask(title="deep1", ref="deep1"), NewTask(title="deep2")]),
                ],
            )
        ],
    )
    for ref in ("one", "deep1"):
        claim_task(queue, alice, ids[ref])
        complete_task(queue, alice, ids[ref], "done")
    cancel_task(queue, alice, ids["two"], "not needed")

    roots = task_tree(queue.store)["roots"]
    counts = {
        title: (find(roots, title)["done"], find(roots, title)["total"]) for title in ("epic", "sub", "one", "two")
    }
    assert counts == {"epic": (2, 3), "sub": (1, 2), "one": (1, 1), "two": (0, 0)}
    assert find(roots, "one")["assignee"] == "alice"


@both_adapters
def test_tree_orders_roots_by_priority_and_children_by_number(queue: QueueContext) -> None:
    ids = make(
        queue,
        [
            NewTask(title="later", priority=3),
            NewTask(title="big", priority=1, children=[NewTask(title=f"step {n}") for n in range(1, 12)]),
            NewTask(title="urgent", priority=0),
        ],
    )
    roots = task_tree(queue.store)["roots"]
    assert [r["title"] for r in roots] == ["urgent", "big", "later"]
    assert [c["title"] for c in roots[1]["children"]] == [f"step {n}" for n in range(1, 12)]
    assert [c["id"] for c in roots[1]["children"]][-2:] == [f"{ids['big']}.10", f"{ids['big']}.11"]
    assert roots[1]["total"] == 11 and roots[0]["children"] == []
