"""The ready queue and bulk creation on a large, deep and wide task DAG, beside raw SQLite.

    .venv/bin/python benchmarks/bench_ready.py [--quick] [--wait-idle S] [--tasks N] [--batches B]

Builds N tasks (default 100,000) as trees of 40 (a root, 3 children, 9 grandchildren,
27 leaves: depth 4), in B large create_tasks batches. The first few trees are free; every
later tree's root is blocked by 1-2 earlier roots, and some of its nodes are blocked by
nodes of earlier trees (blockers inherited through the hierarchy), so most tasks are open
and a few thousand leaves are ready.

Measured, each beside raw SQLite (sqlean, same pragmas, minimal schema, hand-written SQL,
the same rows with readiness computed in Python):
* bulk create of the N tasks via jetpack.tasks.create_tasks. Target <= 10 s.
* jetpack.tasks.ready_tasks(ctx, limit=20), many times. Target p50 <= 5 ms. Also the
  hand-written ready query on Jetpack's own database (same data, Jetpack's indexes).
* for information: claim + complete on the big DAG (a write touches the readiness rule).
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass, field
from typing import Any

from _common import (
    Report,
    add_common_arguments,
    jetpack_settings,
    ms,
    percentile,
    raw_claim,
    raw_complete,
    raw_create,
    temp_dir,
    wait_for_quiet,
)

from jetpack.actor import Actor
from jetpack.store import ConstraintViolation, DataLayer, open_store
from jetpack.tasks import NewTask, QueueContext, claim_task, complete_task, create_tasks, ready_tasks

TREE = (3, 3, 3)  # children per node at each level below the root: 1 + 3 + 9 + 27 = 40 tasks
CREATE_TARGET = 10.0
READY_P50_TARGET = 0.005
SEED = 20240611

RAW_READY = """SELECT id, title, state, priority, assignee, parent_id, skills FROM tasks
    WHERE state = 'ready' ORDER BY priority, created_at, id LIMIT :limit"""


@dataclass
class Node:
    key: str  # unique within the whole plan; used as the batch-local ref
    tree: int
    depth: int  # 1 = root
    priority: int
    children: list[Node] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)  # keys of nodes in earlier trees


def plan_dag(total: int, seed: int = SEED) -> list[Node]:
    """Roots of the trees, with blockers pointing only at earlier trees (so no cycles)."""
    rng = random.Random(seed)
    per_tree = 1 + 3 + 9 + 27
    trees = max(2, total // per_tree)
    free = max(2, trees // 25)  # 4% of the trees start free: ~2,700 ready leaves at 100,000 tasks
    roots: list[Node] = []
    by_depth: list[list[list[str]]] = []  # tree -> depth-1 -> keys

    def grow(node: Node, level: int, levels: list[list[str]]) -> None:
        levels[node.depth - 1].append(node.key)
        if level == len(TREE):
            return
        for k in range(TREE[level]):
            child = Node(f"{node.key}_{k + 1}", node.tree, node.depth + 1, rng.randrange(5))
            node.children.append(child)
            grow(child, level + 1, levels)

    for t in range(trees):
        root = Node(f"n{t}", t, 1, rng.randrange(5))
        levels: list[list[str]] = [[] for _ in range(len(TREE) + 1)]
        grow(root, 0, levels)
        by_depth.append(levels)
        roots.append(root)
        if t < free:
            continue
        root.blockers = [f"n{j}" for j in sorted(set(rng.sample(range(t), min(t, rng.choice((1, 2))))))]
        for node in _walk(root):
            if node.depth > 1 and rng.random() < 0.15:  # a deeper edge to an earlier tree, same level
                earlier = rng.randrange(t)
                node.blockers.append(rng.choice(by_depth[earlier][node.depth - 1]))
    return roots


def _walk(node: Node) -> list[Node]:
    found = [node]
    for child in node.children:
        found.extend(_walk(child))
    return found


def batches_of(roots: list[Node], batches: int) -> list[list[Node]]:
    size = -(-len(roots) // batches)
    return [roots[i : i + size] for i in range(0, len(roots), size)]


# ---------------------------------------------------------------------------------------------
# Jetpack


def to_spec(node: Node, ids: dict[str, str], batch_keys: set[str]) -> NewTask:
    depends = [b if b in batch_keys else ids[b] for b in node.blockers]
    return NewTask(
        title=f"task {node.key}",
        priority=node.priority,
        ref=node.key,
        depends_on=depends,
        children=[to_spec(c, ids, batch_keys) for c in node.children],
    )


class CountingStore:
    """Delegates to the real DataLayer; counts write batches that failed on a constraint (and were retried)."""

    def __init__(self, store: DataLayer) -> None:
        self.store = store
        self.failed_writes = 0
        self.failed_seconds = 0.0

    def write(self, statements: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.store.write(statements)
        except ConstraintViolation:
            self.failed_writes += 1
            self.failed_seconds += time.perf_counter() - start
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def build_jetpack(ctx: QueueContext, batches: list[list[Node]]) -> dict[str, float]:
    planner = Actor("bench-planner")
    ids: dict[str, str] = {}
    spec_time = create_time = 0.0
    for batch in batches:
        t0 = time.perf_counter()
        keys = {n.key for root in batch for n in _walk(root)}
        specs = [to_spec(root, ids, keys) for root in batch]
        t1 = time.perf_counter()
        created = create_tasks(ctx, planner, specs)
        t2 = time.perf_counter()
        ids.update({c.ref: c.id for c in created if c.ref is not None})
        spec_time += t1 - t0
        create_time += t2 - t1
    return {"specs": spec_time, "create": create_time}


# ---------------------------------------------------------------------------------------------
# Raw SQLite: the same rows, readiness computed in Python, one transaction per batch


def build_raw(conn: Any, batches: list[list[Node]]) -> float:
    now = time.time_ns() // 1_000_000
    start = time.perf_counter()
    for number, batch in enumerate(batches):
        tasks, ancestors, deps = [], [], []
        for root in batch:
            _raw_rows(root, None, [], False, now + number, tasks, ancestors, deps)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO tasks(id, parent_id, title, state, priority, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            tasks,
        )
        conn.executemany("INSERT INTO task_ancestors(task_id, ancestor_id, distance) VALUES (?, ?, ?)", ancestors)
        conn.executemany("INSERT INTO dependencies(task_id, depends_on) VALUES (?, ?)", deps)
        conn.execute("COMMIT")
    return time.perf_counter() - start


def _raw_rows(
    node: Node,
    parent: str | None,
    lineage: list[str],
    blocked: bool,
    now: int,
    tasks: list[tuple[Any, ...]],
    ancestors: list[tuple[str, str, int]],
    deps: list[tuple[str, str]],
) -> None:
    blocked = blocked or bool(node.blockers)  # nothing is done yet: any blocker, own or inherited, holds
    ready = not node.children and not blocked
    tasks.append((node.key, parent, f"task {node.key}", "ready" if ready else "open", node.priority, now, now))
    chain = [node.key, *lineage]
    ancestors.extend((node.key, a, d) for d, a in enumerate(chain))
    deps.extend((node.key, b) for b in node.blockers)
    for child in node.children:
        _raw_rows(child, node.key, chain, blocked, now, tasks, ancestors, deps)


# ---------------------------------------------------------------------------------------------


def time_calls(call: Any, repeat: int) -> list[float]:
    for _ in range(min(20, repeat)):
        call()  # warm the page cache and the statement cache
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return samples


def pairs_on_dag(
    claim: Any,
    complete: Any,
    pairs: int,
) -> tuple[list[float], list[float]]:
    claims, completes = [], []
    for _ in range(pairs):
        t0 = time.perf_counter()
        task_id = claim()
        t1 = time.perf_counter()
        if task_id is None:
            break
        complete(task_id)
        claims.append(t1 - t0)
        completes.append(time.perf_counter() - t1)
    return claims, completes


def p50_p99(samples: list[float]) -> str:
    return f"{ms(percentile(samples, 50))} / {ms(percentile(samples, 99))}"


def count_states(store: DataLayer) -> dict[str, int]:
    return {r["state"]: r["n"] for r in store.query("SELECT state, count(*) AS n FROM tasks GROUP BY state")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--tasks", type=int, help="tasks in the DAG (default 100,000; quick 10,000)")
    parser.add_argument("--batches", type=int, default=4, help="create_tasks batches (default 4)")
    parser.add_argument("--repeat", type=int, help="ready_tasks calls timed (default 500; quick 100)")
    parser.add_argument("--pairs", type=int, help="claim + complete pairs on the DAG (default 200; quick 50)")
    args = parser.parse_args()
    total = args.tasks or (10_000 if args.quick else 100_000)
    repeat = args.repeat or (100 if args.quick else 500)
    pairs = args.pairs or (50 if args.quick else 200)
    wait_for_quiet(args.wait_idle)

    roots = plan_dag(total)
    batches = batches_of(roots, args.batches)
    nodes = sum(len(_walk(r)) for r in roots)
    edges = sum(len(n.blockers) for r in roots for n in _walk(r))
    report = Report(f"bench_ready: {nodes:,} tasks, {edges:,} blocks edges, {len(batches)} batches")

    with temp_dir("ready") as root:
        raw = raw_create(root / "raw.db")
        raw_create_time = build_raw(raw, batches)

        settings = jetpack_settings(root / "project")
        store = open_store(settings.db_path)
        counting = CountingStore(store)
        built = build_jetpack(QueueContext(store=counting, settings=settings.tasks), batches)  # type: ignore[arg-type]
        ctx = QueueContext(store=store, settings=settings.tasks)
        states = count_states(store)
        raw_states = {r[0]: r[1] for r in raw.execute("SELECT state, count(*) FROM tasks GROUP BY state")}
        if states.get("ready") != raw_states.get("ready"):
            print(f"warning: ready counts differ: jetpack {states} raw {raw_states}")

        report.section("bulk create")
        report.add("tasks by state (jetpack)", ", ".join(f"{k} {v:,}" for k, v in sorted(states.items())))
        report.add("raw SQLite insert of the same rows", f"{raw_create_time:.2f} s")
        report.add(
            f"create_tasks, {nodes:,} tasks",
            f"{built['create']:.2f} s",
            f"<= {CREATE_TARGET:.0f} s",
            built["create"] <= CREATE_TARGET,
        )
        report.add("create_tasks rate", f"{nodes / built['create']:,.0f} tasks/s")
        report.add("raw / create_tasks (speed ratio)", f"{raw_create_time / built['create']:.1%}")
        report.add(
            "create_tasks batches retried (id collision)",
            f"{counting.failed_writes} ({counting.failed_seconds:.2f} s in the failed writes)",
        )
        report.add("building the NewTask specs (not timed above)", f"{built['specs']:.2f} s")

        service = time_calls(lambda: ready_tasks(ctx, limit=20), repeat)
        raw_ready = time_calls(lambda: raw.execute(RAW_READY, {"limit": 21}).fetchall(), repeat)
        own = store.raw_connection()
        same_db = time_calls(lambda: own.execute(RAW_READY, {"limit": 21}).fetchall(), repeat)
        page = ready_tasks(ctx, limit=20)
        first = own.execute(RAW_READY, {"limit": 20}).fetchall()
        if [t.id for t in page.tasks] != [r[0] for r in first]:
            print("warning: ready_tasks and the hand-written query disagree on the first page")

        report.section(f"ready queue, limit 20, {repeat} calls")
        report.add(
            "ready_tasks p50",
            ms(percentile(service, 50)),
            f"<= {ms(READY_P50_TARGET)}",
            percentile(service, 50) <= READY_P50_TARGET,
        )
        report.add("ready_tasks p99", ms(percentile(service, 99)))
        report.add("raw SQL on raw DB p50 / p99", p50_p99(raw_ready))
        report.add("raw SQL on Jetpack's DB p50 / p99", p50_p99(same_db))
        report.add("raw / ready_tasks (p50 speed ratio)", f"{percentile(raw_ready, 50) / percentile(service, 50):.1%}")

        actor = Actor("bench-agent")

        def jp_claim() -> str | None:
            outcome = claim_task(ctx, actor)
            return None if outcome.task is None else outcome.task.id

        def jp_complete(task_id: str) -> None:
            complete_task(ctx, actor, task_id, "done")

        jp_claims, jp_completes = pairs_on_dag(jp_claim, jp_complete, pairs)
        raw_claims, raw_completes = pairs_on_dag(
            lambda: raw_claim(raw, "bench-agent"),
            lambda task_id: raw_complete(raw, "bench-agent", task_id, "done"),
            pairs,
        )
        report.section(f"claim + complete on the DAG, {len(jp_claims)} pairs (information)")
        report.add("service claim p50 / p99", p50_p99(jp_claims))
        report.add("service complete p50 / p99", p50_p99(jp_completes))
        report.add("raw claim p50 / p99", p50_p99(raw_claims))
        report.add("raw complete p50 / p99", p50_p99(raw_completes))
        pair_ratio = (percentile(raw_claims, 50) + percentile(raw_completes, 50)) / (
            percentile(jp_claims, 50) + percentile(jp_completes, 50)
        )
        report.add("raw / service (p50 pair speed ratio)", f"{pair_ratio:.1%}")
        store.close()
        raw.close()
    report.print()


if __name__ == "__main__":
    main()
