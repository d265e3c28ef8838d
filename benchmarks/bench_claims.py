"""Claim + complete throughput of the task queue, each beside raw SQLite doing the same work.

    .venv/bin/python benchmarks/bench_claims.py [--quick] [--wait-idle S] [--tasks N] [--agents K] [--profile]

a) service level: jetpack.tasks.claim_task + complete_task in a loop over N ready tasks, vs
   raw SQLite doing the same claim in the same process: a bare sqlean connection running
   Jetpack's own claim and complete statements on Jetpack's schema (the same rows, events and
   readiness writes, none of the service layer). Target: service >= 50% of it. Also shown: a
   minimal hand-written schema and SQL (no event log, sweep, skills or hierarchy), a floor.
b) the same loop through the MCP SDK's in-process Client (mode="legacy") calling the tools.
c) K (default 8) agent processes, each talking newline-delimited JSON-RPC over stdio to its
   own ``python -m jetpack serve`` (one DB), claiming and completing until the queue is empty.
   Targets: >= 1,500 pairs/s together, claim p99 <= 10 ms at the client. Beside it, K
   processes doing the raw-SQLite claim + complete on one DB.

The stdio client is a minimal JSON-RPC client (benchmarks/_common.py StdioClient), not the SDK's
Client, so the 2 x K processes on a small machine spend their CPU on the server, not the client.
--profile adds a cProfile of the service-level loop (top functions by cumulative time).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import pstats
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    BENCH_DIR,
    PYTHON,
    Report,
    add_common_arguments,
    jetpack_settings,
    ms,
    percentile,
    raw_claim,
    raw_complete,
    raw_connect,
    raw_create,
    raw_insert_flat,
    temp_dir,
    wait_for_quiet,
)

from jetpack.actor import Actor
from jetpack.store import DataLayer, Statement, open_store
from jetpack.tasks import NewTask, QueueContext, claim_task, complete_task, create_tasks
from jetpack.tasks.claims import claim_statements, complete_statements

FILL_BATCH = 1000
SERVICE_TARGET = 0.50
STDIO_PAIRS_TARGET = 1500.0
STDIO_CLAIM_P99_TARGET = 0.010


# ---------------------------------------------------------------------------------------------
# Queues


def open_jetpack(root: Path, tasks: int) -> tuple[DataLayer, QueueContext]:
    """A Jetpack project in ``root`` whose queue holds ``tasks`` independent ready tasks."""
    settings = jetpack_settings(root)
    store = open_store(settings.db_path)
    ctx = QueueContext(store=store, settings=settings.tasks)
    planner = Actor("bench-planner")
    for start in range(0, tasks, FILL_BATCH):
        specs = [NewTask(title=f"task {i}", priority=i % 5) for i in range(start, min(tasks, start + FILL_BATCH))]
        create_tasks(ctx, planner, specs)
    return store, ctx


def open_raw(root: Path, tasks: int) -> Any:
    conn = raw_create(root / "raw.db")
    raw_insert_flat(conn, tasks)
    return conn


# ---------------------------------------------------------------------------------------------
# a) service level vs raw


def drain(claim: Callable[[], str | None], complete: Callable[[str], None]) -> dict[str, Any]:
    claims: list[float] = []
    completes: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        task_id = claim()
        t1 = time.perf_counter()
        if task_id is None:
            break
        claims.append(t1 - t0)
        complete(task_id)
        completes.append(time.perf_counter() - t1)
    wall = time.perf_counter() - start
    return {"pairs": len(completes), "wall": wall, "claim": claims, "complete": completes}


def service_round(tasks: int) -> dict[str, Any]:
    with temp_dir("service") as root:
        store, ctx = open_jetpack(root, tasks)
        actor = Actor("bench-agent")

        def claim() -> str | None:
            outcome = claim_task(ctx, actor)
            return None if outcome.task is None else outcome.task.id

        def complete(task_id: str) -> None:
            complete_task(ctx, actor, task_id, "done")

        try:
            return drain(claim, complete)
        finally:
            store.close()


def raw_round(tasks: int) -> dict[str, Any]:
    with temp_dir("raw") as root:
        conn = open_raw(root, tasks)
        try:
            return drain(
                lambda: raw_claim(conn, "bench-agent"),
                lambda task_id: raw_complete(conn, "bench-agent", task_id, "done"),
            )
        finally:
            conn.close()


def same_sql_round(tasks: int) -> dict[str, Any]:
    """Raw SQLite running exactly Jetpack's claim and complete statements on Jetpack's schema, on a
    bare sqlean connection: the same writes (event rows, sweep, readiness) without the service layer."""
    with temp_dir("same-sql") as root:
        store, ctx = open_jetpack(root, tasks)
        store.close()
        conn = raw_connect(jetpack_settings(root).db_path)
        actor = Actor("bench-agent")
        lease_ms = ctx.lease_ms()

        def run(statements: list[Statement]) -> list[Any]:
            conn.execute("BEGIN IMMEDIATE")
            rows = [conn.execute(st.sql, st.params).fetchall() for st in statements]
            conn.execute("COMMIT")
            return rows

        def claim() -> str | None:
            rows = run(claim_statements(actor, None, time.time_ns() // 1_000_000, lease_ms))[-1]
            return str(rows[0][0]) if rows else None

        def complete(task_id: str) -> None:
            run(complete_statements(actor, task_id, "done", time.time_ns() // 1_000_000))

        try:
            return drain(claim, complete)
        finally:
            conn.close()


def rate(result: dict[str, Any]) -> float:
    return float(result["pairs"] / result["wall"])


def median_round(results: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(results, key=rate)[len(results) // 2]


# ---------------------------------------------------------------------------------------------
# b) the in-process MCP client


def mcp_round(tasks: int) -> dict[str, Any]:
    import anyio
    from mcp import Client

    from jetpack.server import IdentityDefaults, build_parts, create_server

    with temp_dir("mcp") as root:
        store, _ = open_jetpack(root, tasks)
        parts = build_parts(jetpack_settings(root), store=store, identity=IdentityDefaults(name="bench-mcp"))
        result: dict[str, Any] = {}

        async def session() -> None:
            async with Client(create_server(parts), mode="legacy") as client:
                await client.call_tool("list_tasks", {"limit": 1})  # register the agent, warm up
                claims: list[float] = []
                completes: list[float] = []
                start = time.perf_counter()
                while True:
                    t0 = time.perf_counter()
                    claimed = (await client.call_tool("claim_task", {})).structured_content or {}
                    t1 = time.perf_counter()
                    if claimed.get("id") is None:
                        break
                    claims.append(t1 - t0)
                    done = await client.call_tool("complete_task", {"task_id": claimed["id"], "summary": "done"})
                    if done.is_error:
                        raise RuntimeError(f"complete_task failed: {done.content}")
                    completes.append(time.perf_counter() - t1)
                result.update(pairs=len(completes), wall=time.perf_counter() - start, claim=claims, complete=completes)

        try:
            anyio.run(session)
        finally:
            store.close()
        return result


# ---------------------------------------------------------------------------------------------
# c) K agent processes


def run_agents(mode: str, location: Path, agents: int) -> dict[str, Any]:
    workers = [
        subprocess.Popen(
            [PYTHON, str(BENCH_DIR / "_agent_worker.py"), mode, str(location), f"agent-{i}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=str(BENCH_DIR),
        )
        for i in range(agents)
    ]
    for worker in workers:
        line = worker.stdout.readline().strip()  # type: ignore[union-attr]
        if line != "ready":
            raise RuntimeError(f"{mode} worker did not start (said {line!r}, status {worker.poll()})")
    for worker in workers:
        worker.stdin.write("go\n")  # type: ignore[union-attr]
        worker.stdin.flush()  # type: ignore[union-attr]
    results = []
    for worker in workers:
        out, _ = worker.communicate(timeout=600)
        if worker.returncode != 0:
            raise RuntimeError(f"{mode} worker failed with status {worker.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {
        "pairs": sum(r["pairs"] for r in results),
        "wall": wall,
        "claim": [x for r in results for x in r["claim"]],
        "complete": [x for r in results for x in r["complete"]],
        "client_cpu": sum(r["client_cpu"] for r in results),
        "server_cpu": sum(r["server_cpu"] for r in results),
        "per_agent": [r["pairs"] for r in results],
    }


def stdio_round(tasks: int, agents: int, *, hub: bool = False) -> dict[str, Any]:
    with temp_dir("hub" if hub else "stdio") as root:
        store, _ = open_jetpack(root, tasks)
        store.close()
        result = run_agents("hub" if hub else "stdio", root, agents)
        check = open_store(jetpack_settings(root).db_path)
        try:
            done = check.query("SELECT count(*) AS n FROM tasks WHERE state = 'done'")[0]["n"]
        finally:
            check.close()
        if done != tasks or result["pairs"] != tasks:
            raise RuntimeError(f"stdio run finished {result['pairs']} pairs, {done} done, of {tasks} tasks")
        return result


def raw_agents_round(tasks: int, agents: int) -> dict[str, Any]:
    with temp_dir("raw-agents") as root:
        open_raw(root, tasks).close()
        result = run_agents("raw", root / "raw.db", agents)
        if result["pairs"] != tasks:
            raise RuntimeError(f"raw agents finished {result['pairs']} of {tasks}")
        return result


# ---------------------------------------------------------------------------------------------


def latency_rows(report: Report, label: str, result: dict[str, Any]) -> None:
    claims, completes = result["claim"], result["complete"]
    report.add(
        f"{label} claim p50 / p99",
        f"{ms(percentile(claims, 50))} / {ms(percentile(claims, 99))}",
    )
    report.add(
        f"{label} complete p50 / p99",
        f"{ms(percentile(completes, 50))} / {ms(percentile(completes, 99))}",
    )


def profile_service(tasks: int) -> None:
    with temp_dir("profile") as root:
        store, ctx = open_jetpack(root, tasks)
        actor = Actor("bench-agent")
        profiler = cProfile.Profile()
        profiler.enable()
        while (outcome := claim_task(ctx, actor)).task is not None:
            complete_task(ctx, actor, outcome.task.id, "done")
        profiler.disable()
        store.close()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
    print(f"\n== cProfile of the service-level loop ({tasks} pairs), by cumulative time")
    print(out.getvalue())


def main() -> None:
    logging.getLogger("jetpack").setLevel(logging.WARNING)  # the in-process server logs sessions at INFO
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--tasks", type=int, help="tasks per in-process round (default 3000; quick 300)")
    parser.add_argument("--stdio-tasks", type=int, help="tasks for the multi-process runs (default 12000; quick 800)")
    parser.add_argument("--agents", type=int, default=8, help="agent processes in part c (default 8)")
    parser.add_argument("--rounds", type=int, help="in-process rounds, median reported (default 3; quick 1)")
    parser.add_argument("--profile", action="store_true", help="also cProfile the service-level loop")
    args = parser.parse_args()
    tasks = args.tasks or (300 if args.quick else 3000)
    stdio_tasks = args.stdio_tasks or (800 if args.quick else 12000)
    rounds = args.rounds or (1 if args.quick else 3)
    wait_for_quiet(args.wait_idle)

    report = Report(f"bench_claims: claim + complete ({'quick' if args.quick else 'full'})")

    # a) service vs raw, alternating rounds so both see the same machine state
    service_results, raw_results, same_results = [], [], []
    for _ in range(rounds):
        raw_results.append(raw_round(tasks))
        same_results.append(same_sql_round(tasks))
        service_results.append(service_round(tasks))
    service, raw = median_round(service_results), median_round(raw_results)
    same = median_round(same_results)
    ratio = rate(service) / rate(same)
    report.section(f"a) service level, 1 thread, {tasks} tasks, median of {rounds} round(s)")
    report.add("raw SQLite, Jetpack's statements, pairs/s", f"{rate(same):,.0f}")
    report.add("raw SQLite, minimal schema and SQL, pairs/s", f"{rate(raw):,.0f}")
    report.add("service pairs/s", f"{rate(service):,.0f}")
    report.add("service / raw (same statements)", f"{ratio:.1%}", f">= {SERVICE_TARGET:.0%}", ratio >= SERVICE_TARGET)
    report.add("service / raw (minimal)", f"{rate(service) / rate(raw):.1%}")
    latency_rows(report, "raw same statements", same)
    latency_rows(report, "raw minimal", raw)
    latency_rows(report, "service", service)

    # b) in-process MCP client
    mcp = median_round([mcp_round(tasks) for _ in range(rounds)])
    report.section(f"b) in-process MCP client (SDK Client, legacy), {tasks} tasks")
    report.add("MCP pairs/s", f"{rate(mcp):,.0f}")
    report.add("MCP / raw", f"{rate(mcp) / rate(raw):.1%}")
    report.add("MCP / service", f"{rate(mcp) / rate(service):.1%}")
    latency_rows(report, "MCP", mcp)

    # c) K stdio agents vs K raw processes
    agents = args.agents
    raw_k = raw_agents_round(stdio_tasks, agents)
    one = stdio_round(max(200, stdio_tasks // 8), 1)
    stdio_k = stdio_round(stdio_tasks, agents)
    hub_k = stdio_round(stdio_tasks, agents, hub=True)
    report.section(f"c) {agents} agent processes, one DB, {stdio_tasks} tasks (minimal JSON-RPC stdio client)")
    report.add(f"raw SQLite, {agents} processes, pairs/s", f"{rate(raw_k):,.0f}")
    latency_rows(report, f"raw x{agents}", raw_k)
    report.add("stdio, 1 agent, pairs/s", f"{rate(one):,.0f}")
    latency_rows(report, "stdio x1", one)
    report.add(
        "stdio x1 CPU per pair: server / client",
        f"{ms(one['server_cpu'] / one['pairs'])} / {ms(one['client_cpu'] / one['pairs'])}",
    )
    stdio_rate = rate(stdio_k)
    claim_p99 = percentile(stdio_k["claim"], 99)
    report.add(
        f"stdio, {agents} agents, pairs/s",
        f"{stdio_rate:,.0f}",
        f">= {STDIO_PAIRS_TARGET:,.0f}",
        stdio_rate >= STDIO_PAIRS_TARGET,
    )
    report.add(f"stdio x{agents} / raw x{agents}", f"{stdio_rate / rate(raw_k):.1%}")
    report.add(
        f"stdio x{agents} claim p99",
        ms(claim_p99),
        f"<= {ms(STDIO_CLAIM_P99_TARGET)}",
        claim_p99 <= STDIO_CLAIM_P99_TARGET,
    )
    report.add(
        f"stdio x{agents} claim p50 / complete p50 / complete p99",
        f"{ms(percentile(stdio_k['claim'], 50))} / {ms(percentile(stdio_k['complete'], 50))} / "
        f"{ms(percentile(stdio_k['complete'], 99))}",
    )
    pairs = stdio_k["pairs"]
    report.add(
        f"stdio x{agents} CPU per pair: servers / clients",
        f"{ms(stdio_k['server_cpu'] / pairs)} / {ms(stdio_k['client_cpu'] / pairs)}",
    )
    report.add(
        "pairs per agent: min / median / max",
        f"{min(stdio_k['per_agent'])} / {statistics.median(stdio_k['per_agent']):.0f} / {max(stdio_k['per_agent'])}",
    )
    report.section(f"c') the same {agents} agents through one hub (jetpack serve --hub, docs/hub.md)")
    report.add(f"hub, {agents} agents, pairs/s", f"{rate(hub_k):,.0f}")
    report.add(
        f"hub x{agents} claim p50 / p99, complete p50 / p99",
        f"{ms(percentile(hub_k['claim'], 50))} / {ms(percentile(hub_k['claim'], 99))}, "
        f"{ms(percentile(hub_k['complete'], 50))} / {ms(percentile(hub_k['complete'], 99))}",
    )
    report.print()

    if args.profile:
        profile_service(tasks)


if __name__ == "__main__":
    main()
