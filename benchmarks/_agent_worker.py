"""One benchmark agent process: claims and completes tasks until the queue is empty.

    python benchmarks/_agent_worker.py stdio PROJECT_DIR AGENT_NAME
    python benchmarks/_agent_worker.py hub   PROJECT_DIR AGENT_NAME   (jetpack serve --hub)
    python benchmarks/_agent_worker.py raw   DB_PATH     AGENT_NAME

``stdio`` talks MCP (newline-delimited JSON-RPC) to its own ``python -m jetpack serve``;
``raw`` runs the hand-written SQL of the baseline on its own sqlean connection. Both print
``ready`` once set up, wait for a ``go`` line on stdin (so that every agent starts together),
then print one JSON line of results. Started by bench_claims.py; not run by run_all.py.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from _common import StdioClient, raw_claim, raw_complete, raw_connect


def _wait_for_go() -> None:
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("worker: expected 'go'")


def run_stdio(project: Path, agent: str, *, hub: bool = False) -> dict[str, object]:
    client = StdioClient(project, agent, env={"JETPACK_HUB": "1"} if hub else None)
    client.initialize()
    client.call("list_tasks", {"limit": 1})  # registers the agent and warms the server's code paths
    _wait_for_go()
    cpu0 = time.process_time()
    server_cpu0 = client.cpu_seconds()
    claim_latencies: list[float] = []
    complete_latencies: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        task = client.call("claim_task")
        t1 = time.perf_counter()
        claim_latencies.append(t1 - t0)
        if task.get("id") is None:
            break
        client.call("complete_task", {"task_id": task["id"], "summary": "done"})
        complete_latencies.append(time.perf_counter() - t1)
    end = time.perf_counter()
    client_cpu = time.process_time() - cpu0
    server_cpu = client.cpu_seconds() - server_cpu0  # the run only, not the server's start-up
    client.close()
    return {
        "pairs": len(complete_latencies),
        "start": start,
        "end": end,
        "claim": claim_latencies,
        "complete": complete_latencies,
        "client_cpu": client_cpu,
        "server_cpu": server_cpu,
    }


def run_raw(db: Path, agent: str) -> dict[str, object]:
    conn = raw_connect(db)
    _wait_for_go()
    cpu0 = time.process_time()
    claim_latencies: list[float] = []
    complete_latencies: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        task_id = raw_claim(conn, agent)
        t1 = time.perf_counter()
        claim_latencies.append(t1 - t0)
        if task_id is None:
            break
        raw_complete(conn, agent, task_id, "done")
        complete_latencies.append(time.perf_counter() - t1)
    end = time.perf_counter()
    conn.close()
    return {
        "pairs": len(complete_latencies),
        "start": start,
        "end": end,
        "claim": claim_latencies,
        "complete": complete_latencies,
        "client_cpu": time.process_time() - cpu0,
        "server_cpu": 0.0,
    }


def main() -> None:
    mode, location, agent = sys.argv[1:4]
    if mode in ("stdio", "hub"):
        result = run_stdio(Path(location), agent, hub=mode == "hub")
    else:
        result = run_raw(Path(location), agent)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
