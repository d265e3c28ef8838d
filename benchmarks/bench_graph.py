"""TaskGraph recompute and query_graph(next) on large DAGs, and the makespan of each claim strategy.

    .venv/bin/python benchmarks/bench_graph.py [--quick] [--wait-idle S] [--sizes 10000,100000] [--dags N]

a) The DAG of bench_ready.py (trees of 40 tasks: a root, 3, 9, 27 leaves; later roots blocked by
   earlier ones, 15% of deeper nodes by a node of an earlier tree), built with create_tasks, with
   estimates of 5-90 minutes on the leaves. At each size:
   * full recompute: ``task_graph`` with an empty cache (read every task and edge, build the
     structure, analyse). Target <= 300 ms at 100,000 tasks;
   * after a claim (the states move forward from the event log; the analysis is reused) and after
     a completion (the unfinished work is re-analysed on the same structure);
   * a cached call (nothing changed: one version query);
   * beside them, raw SQLite + numpy in the same run: a bare sqlean connection reading the same
     columns of every task and edge as tuples into the same position arrays (the read any
     recompute must do, with no analysis);
   * ``query_graph(kind="next")`` p50 for an agent, the graph cached.
b) Simulated swarms (jetpack/swarm/simulate.py: the real claim service under a ManualClock):
   random layered DAGs of 200 tasks, 4 agents; per strategy, the makespan over the lower bound
   max(critical path, total work / agents), mean and worst over the DAGs.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path
from typing import Any

from _common import (
    Report,
    add_common_arguments,
    jetpack_settings,
    ms,
    percentile,
    raw_connect,
    temp_dir,
    wait_for_quiet,
)
from bench_ready import batches_of, build_jetpack, plan_dag

from jetpack.actor import Actor
from jetpack.store import open_store
from jetpack.swarm.graph import forget_cached_graphs, task_graph
from jetpack.swarm.graph_queries import query_graph
from jetpack.swarm.simulate import random_layered_dag, simulate
from jetpack.swarm.strategies import Strategy
from jetpack.tasks import QueueContext, claim_task, complete_task

RECOMPUTE_TARGET = 0.300
TARGET_SIZE = 100_000
RATIO_TARGET = 1.25


def raw_read(path: Path) -> float:
    """Raw SQLite + numpy: every task and blocks edge as tuples, into position arrays."""
    import numpy as np

    conn = raw_connect(path)
    try:
        start = time.perf_counter()
        tasks = conn.execute("SELECT rowid, id, parent_id, state, estimate_minutes FROM tasks").fetchall()
        edges = conn.execute("SELECT task_id, depends_on FROM dependencies WHERE kind = 'blocks'").fetchall()
        index = {row[1]: i for i, row in enumerate(tasks)}
        parent = np.array([index.get(row[2], -1) for row in tasks], dtype=np.int64)
        done = np.array([row[3] == "done" for row in tasks])
        estimate = np.array([row[4] for row in tasks], dtype=np.float64)
        waiting = np.array([index[e[0]] for e in edges], dtype=np.int64)
        blocking = np.array([index[e[1]] for e in edges], dtype=np.int64)
        elapsed = time.perf_counter() - start
        del parent, done, estimate, waiting, blocking
        return elapsed
    finally:
        conn.close()


def measure_size(report: Report, size: int, repeats: int) -> None:
    with temp_dir(f"graph-{size}") as root:
        settings = jetpack_settings(root)
        store = open_store(settings.db_path)
        ctx = QueueContext(store=store, settings=settings.tasks)
        t0 = time.perf_counter()
        build_jetpack(ctx, batches_of(plan_dag(size), 4))
        store.execute(
            "UPDATE tasks SET estimate_minutes = 5 + abs(random()) % 86 "
            "WHERE NOT EXISTS (SELECT 1 FROM tasks c WHERE c.parent_id = tasks.id)"
        )
        store.query("PRAGMA wal_checkpoint(TRUNCATE)")  # as a server's background checkpoints would have
        built = time.perf_counter() - t0
        full, after_claim, after_done, cached, raw = [], [], [], [], []
        worker = Actor("bench-worker")
        for _ in range(repeats):
            raw.append(raw_read(settings.db_path))
            forget_cached_graphs()
            start = time.perf_counter()
            graph = task_graph(store)
            full.append(time.perf_counter() - start)
            outcome = claim_task(ctx, worker)
            start = time.perf_counter()
            task_graph(store)
            after_claim.append(time.perf_counter() - start)
            if outcome.task is not None:
                complete_task(ctx, worker, outcome.task.id, "done")
                start = time.perf_counter()
                task_graph(store)
                after_done.append(time.perf_counter() - start)
            for _ in range(20):
                start = time.perf_counter()
                task_graph(store)
                cached.append(time.perf_counter() - start)
        agent = Actor("bench-agent")
        query_graph(ctx, agent, "next")  # warm
        nexts = []
        for _ in range(20 if repeats < 5 else 200):
            start = time.perf_counter()
            answer = query_graph(ctx, agent, "next", limit=10)
            nexts.append(time.perf_counter() - start)
        stats = query_graph(ctx, agent, "stats").stats
        store.close()
    assert stats is not None
    report.section(
        f"a) {size:,} tasks ({stats.work:,} leaves, {stats.ready:,} ready, {len(graph.structure.forward.key):,} "
        f"graph edges, {graph.structure.level.max() + 1} levels; built in {built:.1f} s), median of {repeats}"
    )
    full_p50 = statistics.median(full)
    target = f"<= {ms(RECOMPUTE_TARGET)}" if size >= TARGET_SIZE else ""
    report.add(
        "TaskGraph full recompute (read + structure + analysis)",
        ms(full_p50),
        target,
        full_p50 <= RECOMPUTE_TARGET if size >= TARGET_SIZE else None,
    )
    report.add("raw SQLite + numpy: the same read into arrays", ms(statistics.median(raw)))
    report.add("TaskGraph after a claim (states from the event log)", ms(statistics.median(after_claim)))
    report.add("TaskGraph after a completion (unfinished work re-analysed)", ms(statistics.median(after_done)))
    report.add("TaskGraph, nothing changed (version query)", ms(statistics.median(cached)))
    report.add(
        "query_graph(next) p50 / p99",
        f"{ms(percentile(nexts, 50))} / {ms(percentile(nexts, 99))}",
    )
    report.add(
        "critical path / fan-out",
        f"{stats.critical_path_steps} tasks, {stats.critical_path_length:,.0f} min; {stats.dependents_counted}",
    )
    del answer


def measure_strategies(report: Report, dags: int) -> list[tuple[str, float, float, float]]:
    rows: list[tuple[str, float, float, float]] = []
    results: dict[Strategy, list[Any]] = {s: [] for s in Strategy}
    with temp_dir("sim") as root:
        for seed in range(dags):
            dag = random_layered_dag(seed, tasks=200)
            for strategy in Strategy:
                results[strategy].append(simulate(dag, strategy, root))
    report.section(f"b) simulated swarms: {dags} random layered DAGs of 200 tasks, 4 agents")
    for strategy, runs in results.items():
        ratios = [r.ratio for r in runs]
        mean = statistics.mean(ratios)
        is_graph = strategy is Strategy.GRAPH_PRIORITIZED
        report.add(
            f"{strategy.value}: makespan / lower bound, mean (worst)",
            f"{mean:.3f} ({max(ratios):.3f})",
            f"<= {RATIO_TARGET}" if is_graph else "",
            mean <= RATIO_TARGET if is_graph else None,
        )
        rows.append((strategy.value, statistics.mean(r.makespan for r in runs), mean, max(ratios)))
    first_fit = statistics.mean(r.makespan for r in results[Strategy.FIRST_FIT])
    graph = statistics.mean(r.makespan for r in results[Strategy.GRAPH_PRIORITIZED])
    report.add(
        "graph-prioritized / priority order (first-fit), mean makespan",
        f"{graph / first_fit:.3f}",
        "<= 1",
        graph <= first_fit,
    )
    return rows


def main() -> None:
    logging.getLogger("jetpack").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument(
        "--sizes", default="", help="comma-separated task counts (default 10000,100000; quick 1000,5000; '' none)"
    )
    parser.add_argument("--dags", type=int, help="simulated DAGs per strategy (default 20; quick 2; 0: skip)")
    parser.add_argument("--repeats", type=int, help="recomputes per size, median reported (default 5; quick 2)")
    args = parser.parse_args()
    sizes = [int(s) for s in (args.sizes or ("1000,5000" if args.quick else "10000,100000")).split(",") if s]
    dags = args.dags if args.dags is not None else (2 if args.quick else 20)
    repeats = args.repeats or (2 if args.quick else 5)
    wait_for_quiet(args.wait_idle)

    report = Report(f"bench_graph: TaskGraph and claim strategies ({'quick' if args.quick else 'full'})")
    for size in sizes:
        measure_size(report, size, repeats)
    rows = measure_strategies(report, dags) if dags else []
    report.print()
    if not rows:
        return
    print(f"\nMakespan by strategy ({dags} DAGs of 200 tasks, 4 agents; lower bound = max(critical path, work / 4))")
    print(f"{'strategy':<20} {'mean makespan (min)':>20} {'mean ratio':>11} {'worst ratio':>12}")
    for name, makespan, mean, worst in rows:
        print(f"{name:<20} {makespan:>20,.0f} {mean:>11.3f} {worst:>12.3f}")


if __name__ == "__main__":
    main()
