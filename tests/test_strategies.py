"""The five claim strategies, holds, batch claims, their race safety, and scheduling quality in simulation."""

from __future__ import annotations

import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from mcp import Client

from jetpack.actor import Actor
from jetpack.agents import AgentRegistry, SessionInfo
from jetpack.cli.main import main
from jetpack.clock import ManualClock
from jetpack.config import AgentSettings, Settings, SwarmSettings, TaskSettings, load_settings
from jetpack.errors import ConfigError, Conflict, InvalidInput
from jetpack.server import IdentityDefaults, build_parts, create_server
from jetpack.store import DataLayer, open_store
from jetpack.swarm.graph import forget_cached_graphs
from jetpack.swarm.holds import ROUND_ROBIN_CURSOR, Assignment, hold_statements, live_holds
from jetpack.swarm.simulate import random_layered_dag, simulate
from jetpack.swarm.strategies import Strategy, assign_ready_tasks, claim_next
from jetpack.tasks import NewTask, QueueContext, claim_task, complete_task, create_tasks

pytestmark = pytest.mark.both_adapters  # the embedded file and a real tursodb server

SQL_AGENT = Actor("ann", frozenset({"sql"}))
OTHERS = ("bea", "cal", "dan")


def register(store: DataLayer, clock: ManualClock, name: str, skills: list[str] | None = None) -> None:
    AgentRegistry(store, AgentSettings(), clock).register(name, skills or [], SessionInfo(f"session-{name}"))


@pytest.fixture
def fixture(queue: QueueContext, store: DataLayer, clock: ManualClock) -> dict[str, str]:
    """Four live agents: ann (sql) asks; bea, cal, dan (no skills) are idle; only ann has worked before.
    Ready, in queue order: t1 (P0), t2 (P1), t3 (P2, holds back x and y), t4 (P3), t5 (P4, needs sql)."""
    for name in (SQL_AGENT.name, *OTHERS):
        register(store, clock, name)
    (earlier,) = create_tasks(queue, Actor("planner"), [NewTask(title="earlier work")])
    claim_task(queue, SQL_AGENT, earlier.id)
    complete_task(queue, SQL_AGENT, earlier.id, "done")
    clock.advance(60)
    created = create_tasks(
        queue,
        Actor("planner"),
        [
            NewTask(title="t1", ref="t1", priority=0),
            NewTask(title="t2", ref="t2", priority=1),
            NewTask(title="t3", ref="t3", priority=2),
            NewTask(title="t4", ref="t4", priority=3),
            NewTask(title="t5", ref="t5", priority=4, skills=["sql"]),
            NewTask(title="x", ref="x", depends_on=["t3"]),
            NewTask(title="y", ref="y", depends_on=["t3"]),
        ],
    )
    store.execute("INSERT INTO meta(key, value) VALUES (:k, 'cal')", {"k": ROUND_ROBIN_CURSOR})  # dan's turn next
    forget_cached_graphs()
    return {c.ref or "": c.id for c in created}


EXPECTED = {
    Strategy.FIRST_FIT: "t1",  # the first in queue order
    Strategy.BEST_FIT: "t5",  # the only task that uses ann's sql
    Strategy.GRAPH_PRIORITIZED: "t3",  # on the critical path, 2 dependants: 140 against 20
    Strategy.ROUND_ROBIN: "t2",  # turns dan, ann, bea, cal: dan t1, ann t2
    Strategy.LOAD_BALANCED: "t4",  # bea, cal, dan never worked: t1, t2, t3; ann worked: t4
}


def test_each_strategy_hands_ann_a_different_task() -> None:
    assert len(set(EXPECTED.values())) == len(Strategy)


@pytest.mark.parametrize("strategy", list(Strategy))
def test_strategy_assignment(queue: QueueContext, fixture: dict[str, str], strategy: Strategy) -> None:
    claimed = claim_next(queue, SQL_AGENT, strategy).task
    assert claimed is not None and claimed.id == fixture[EXPECTED[strategy]] and claimed.assignee == SQL_AGENT.name


def test_round_robin_holds_the_other_shares_for_their_agents(
    queue: QueueContext, fixture: dict[str, str], clock: ManualClock
) -> None:
    claim_next(queue, SQL_AGENT, Strategy.ROUND_ROBIN)
    holds = {h.agent: h.task_id for h in live_holds(queue.store, clock.now_ms())}
    assert holds == {"dan": fixture["t1"], "bea": fixture["t3"], "cal": fixture["t4"]}
    for name, ref in (("bea", "t3"), ("dan", "t1"), ("cal", "t4")):  # any strategy: a hold comes first
        claimed = claim_next(queue, Actor(name), Strategy.FIRST_FIT).task
        assert claimed is not None and claimed.id == fixture[ref]


def test_load_balanced_serves_the_longest_idle_agents_first(
    queue: QueueContext, fixture: dict[str, str], clock: ManualClock
) -> None:
    claim_next(queue, SQL_AGENT, Strategy.LOAD_BALANCED)
    holds = {h.agent: h.task_id for h in live_holds(queue.store, clock.now_ms())}
    assert holds == {"bea": fixture["t1"], "cal": fixture["t2"], "dan": fixture["t3"]}


def test_a_held_task_is_only_its_holders_until_the_hold_lapses(
    queue: QueueContext, fixture: dict[str, str], clock: ManualClock
) -> None:
    assign_ready_tasks(queue, [Actor("bea")], Strategy.LOAD_BALANCED)  # t1 held for bea
    with pytest.raises(Conflict, match=r"held for bea until .* \(the load-balanced strategy assigned it\)"):
        claim_task(queue, Actor("cal"), fixture["t1"])
    taken = claim_next(queue, Actor("cal"), Strategy.FIRST_FIT).task
    assert taken is not None and taken.id == fixture["t2"]  # the queue skips what others hold
    clock.advance(queue.swarm.hold_seconds + 1)
    lapsed = claim_task(queue, Actor("cal"), fixture["t1"]).task
    assert lapsed is not None and lapsed.assignee == "cal"


def test_nothing_for_you_says_tasks_are_held_for_others(queue: QueueContext, clock: ManualClock) -> None:
    (only,) = create_tasks(queue, Actor("planner"), [NewTask(title="only")])
    assign_ready_tasks(queue, [Actor("bea")], Strategy.ROUND_ROBIN)
    outcome = claim_next(queue, Actor("cal"), Strategy.FIRST_FIT)
    assert outcome.task is None and outcome.reason and "1 ready task(s) held for other agents" in outcome.reason
    held = claim_next(queue, Actor("bea"), Strategy.GRAPH_PRIORITIZED).task
    assert held is not None and held.id == only.id


def test_assign_ready_tasks_for_a_pull_strategy_gives_each_agent_its_best(
    queue: QueueContext, fixture: dict[str, str], clock: ManualClock
) -> None:
    dealt = assign_ready_tasks(queue, [SQL_AGENT, Actor("bea")], Strategy.BEST_FIT)
    assert {(a.agent, a.task_id) for a in dealt} == {("ann", fixture["t5"]), ("bea", fixture["t1"])}


def test_unknown_strategy_and_bad_batch_are_refused(queue: QueueContext) -> None:
    with pytest.raises(InvalidInput, match="choose one of first-fit, best-fit, round-robin"):
        claim_next(queue, SQL_AGENT, "fastest")
    with pytest.raises(InvalidInput, match="batch must be between 1 and 20"):
        claim_next(queue, SQL_AGENT, batch=0)


# ---------------------------------------------------------------------------------------------
# Batches


@pytest.fixture
def batch_tree(queue: QueueContext) -> dict[str, str]:
    created = create_tasks(
        queue,
        Actor("planner"),
        [
            NewTask(
                title="api",
                ref="api",
                children=[
                    NewTask(title="users", ref="users", priority=0, files=["src/api/users.py"]),
                    NewTask(title="orders", ref="orders", priority=2),
                    NewTask(title="carts", ref="carts", priority=3),
                ],
            ),
            NewTask(title="api docs", ref="docs", priority=1, files=["src/api/**"]),
            NewTask(title="unrelated", ref="other", priority=1, files=["web/app.tsx"]),
        ],
    )
    return {c.ref or "": c.id for c in created}


def test_a_batch_claims_related_tasks_together(queue: QueueContext, batch_tree: dict[str, str]) -> None:
    got = claim_next(queue, SQL_AGENT, Strategy.FIRST_FIT, batch=3)
    assert [t.id for t in got.tasks] == [batch_tree["users"], batch_tree["docs"], batch_tree["orders"]]
    assert {t.assignee for t in got.tasks} == {SQL_AGENT.name}
    rest = claim_next(queue, Actor("bea"), Strategy.FIRST_FIT, batch=5)
    assert [t.id for t in rest.tasks] == [batch_tree["other"]]  # related to nothing left
    sibling = claim_next(queue, Actor("cal"), Strategy.FIRST_FIT, batch=5).task
    assert sibling is not None and sibling.id == batch_tree["carts"]


def test_a_batch_around_a_named_task(queue: QueueContext, batch_tree: dict[str, str]) -> None:
    got = claim_next(queue, SQL_AGENT, task_id=batch_tree["carts"], batch=2)
    assert [t.id for t in got.tasks] == [batch_tree["carts"], batch_tree["users"]]


def test_a_batch_starts_from_the_agents_own_hold(
    queue: QueueContext, batch_tree: dict[str, str], clock: ManualClock
) -> None:
    queue.store.write(hold_statements([Assignment(batch_tree["carts"], "ann")], "round-robin", clock.now_ms(), 10_000))
    got = claim_next(queue, SQL_AGENT, Strategy.FIRST_FIT, batch=2)
    assert [t.id for t in got.tasks] == [batch_tree["carts"], batch_tree["users"]]


# ---------------------------------------------------------------------------------------------
# Races


@pytest.mark.parametrize("strategy", list(Strategy))
def test_no_task_is_claimed_twice_under_any_strategy(tmp_path: Path, strategy: Strategy) -> None:
    path = tmp_path / "race.db"
    setup = open_store(path)
    planner = QueueContext(store=setup, settings=TaskSettings())
    roots = create_tasks(planner, Actor("planner"), [NewTask(title=f"r{i}", ref=f"r{i}") for i in range(60)])
    create_tasks(
        planner,
        Actor("planner"),
        [NewTask(title=f"d{i}", depends_on=[roots[i % 60].id, roots[(i * 7) % 60].id]) for i in range(120)],
    )
    won: dict[str, list[str]] = {}

    def worker(name: str) -> None:
        store = open_store(path)  # a connection of its own, as another process would have
        swarm = SwarmSettings(strategy=strategy.value, hold_seconds=0.2)
        ctx = QueueContext(store=store, settings=TaskSettings(), swarm=swarm)
        AgentRegistry(store).register(name, [], SessionInfo(f"s-{name}"))
        actor = Actor(name)
        mine = won.setdefault(name, [])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            got = claim_next(ctx, actor, batch=2 if len(mine) % 3 == 0 else 1)
            if not got.tasks:
                if not store.query("SELECT 1 FROM tasks WHERE state != 'done' LIMIT 1"):
                    break
                time.sleep(0.002)  # what is left is claimed or held by others, or waits on them
                continue
            for task in got.tasks:
                mine.append(task.id)
                complete_task(ctx, actor, task.id, "")
        store.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [t for ids in won.values() for t in ids]
    assert len(claimed) == len(set(claimed))
    assert setup.query("SELECT count(*) AS n FROM tasks WHERE state = 'done'")[0]["n"] == 180
    events = setup.query("SELECT task_id, count(*) AS n FROM events WHERE kind = 'claimed' GROUP BY task_id")
    assert len(events) == 180 and {e["n"] for e in events} == {1}
    setup.close()


# ---------------------------------------------------------------------------------------------
# Scheduling quality (simulated time on the real services)


def test_graph_prioritized_schedules_well_in_simulation(tmp_path: Path) -> None:
    """Random layered DAGs of 200 tasks, 4 workers: graph-prioritized finishes no later than priority order
    on average, and within 1.25 x of max(critical path, total work / agents) on average."""
    priority, graph = [], []
    for seed in range(6):
        dag = random_layered_dag(seed, tasks=200)
        priority.append(simulate(dag, Strategy.FIRST_FIT, tmp_path))
        graph.append(simulate(dag, Strategy.GRAPH_PRIORITIZED, tmp_path))
    assert statistics.mean(r.makespan for r in graph) <= statistics.mean(r.makespan for r in priority)
    assert statistics.mean(r.ratio for r in graph) <= 1.25
    assert all(r.makespan >= r.lower_bound - 1e-9 for r in priority + graph)


# ---------------------------------------------------------------------------------------------
# Configuration and entrypoints


def test_the_swarm_strategy_comes_from_config_or_environment(project: Path) -> None:
    (project / ".jetpack").mkdir()
    (project / ".jetpack" / "config.toml").write_text('[swarm]\nstrategy = "graph-prioritized"\nhold_seconds = 5\n')
    settings = load_settings({"JETPACK_PROJECT_DIR": str(project)})
    assert settings.swarm == SwarmSettings(strategy="graph-prioritized", hold_seconds=5.0)
    assert load_settings({"JETPACK_PROJECT_DIR": str(project), "JETPACK_STRATEGY": "round-robin"}).swarm.strategy == (
        "round-robin"
    )
    (project / ".jetpack" / "config.toml").write_text('[swarm]\nstrategy = "random"\n')
    with pytest.raises(ConfigError, match=r"swarm\.strategy must be one of first-fit"):
        load_settings({"JETPACK_PROJECT_DIR": str(project)})


def test_cli_claim_with_a_strategy_and_a_batch(project: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["--project", str(project), "init"]).exit_code == 0
    for args in (["low", "-p", "3"], ["high", "-p", "0"], ["hub", "-p", "4"]):
        assert runner.invoke(main, ["--project", str(project), "task", "add", *args]).exit_code == 0
    listing = runner.invoke(main, ["--project", str(project), "task", "list", "--json"])
    ids = {t["title"]: t["id"] for t in json.loads(listing.stdout)["tasks"]}
    runner.invoke(main, ["--project", str(project), "task", "add", "after", "--depends-on", ids["hub"]])
    result = runner.invoke(
        main, ["--project", str(project), "task", "claim", "--as", "ann", "--strategy", "graph-prioritized", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == ids["hub"]
    refused = runner.invoke(main, ["--project", str(project), "task", "claim", "--strategy", "fastest"])
    assert refused.exit_code != 0 and "first-fit" in refused.output


@pytest.mark.anyio
async def test_claim_task_tool_takes_a_strategy_and_a_batch(settings: Settings, store: DataLayer) -> None:
    server = create_server(build_parts(settings, store=store, clock=ManualClock(), identity=IdentityDefaults()))
    async with Client(server, mode="legacy") as client:
        await client.call_tool("register_agent", {"name": "ann"})
        made = await client.call_tool(
            "create_tasks",
            {
                "tasks": [
                    {"title": "epic", "children": [{"title": "a", "priority": 0}, {"title": "b", "priority": 3}]},
                    {"title": "solo", "priority": 1},
                ]
            },
        )
        ids = {c["title"]: c["id"] for c in made.structured_content["created"]}  # type: ignore[index]
        result: Any = (await client.call_tool("claim_task", {"strategy": "first-fit", "batch": 2})).structured_content
        assert result["id"] == ids["a"] and [t["id"] for t in result["also_claimed"]] == [ids["b"]]
        bad = await client.call_tool("claim_task", {"strategy": "fastest"})
        assert bad.is_error
