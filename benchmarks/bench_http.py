"""50 agents over Streamable HTTP: one `jetpack serve --http`, on the embedded DataLayer and on tursodb.

    .venv/bin/python benchmarks/bench_http.py [--quick] [--agents 50] [--seconds 10] [--skip-remote]

a) Every agent is its own MCP session (initialize, then tools/call over keep-alive HTTP/1.1 to
   /mcp) and loops claim_task → complete_task → send_mail (to another agent) for a fixed window.
   Printed: claim + complete pairs/s, messages/s and all operations/s together, client-side
   p50/p99 per tool, and whether any task was completed twice (it must not be). The agents are
   threads of two worker processes using a minimal client (http.client + json; the SDK's Python
   client would spend the two CPUs itself). Same run, same layout: raw SQLite, 50 threads claiming,
   completing and inserting a message with hand-written SQL on a bare connection each.
   Targets on the embedded DataLayer: >= 1,000 operations/s together, p99 <= 50 ms.
b) The same against a `tursodb --sync-server` (libSQL over Hrana/HTTP) holding the data.
c) The remote adapter's own cost: the same read and the same one-statement write through
   LibSQLDataLayer and as hand-made POST /v2/pipeline requests (httpx2, keep-alive), one at a
   time, as a ratio.

--quick: 10 agents, 3 s windows, fewer adapter calls.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from _common import (
    PYTHON,
    REPO,
    Report,
    add_common_arguments,
    ms,
    percentile,
    raw_claim,
    raw_complete,
    raw_connect,
    raw_create,
    raw_insert_flat,
    subprocess_env,
    temp_dir,
    wait_for_quiet,
)

sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "e2e")]
from http_agent import HttpAgent  # noqa: E402
from libsql_server import free_port, start_tursodb, tursodb_binary  # noqa: E402

EMBEDDER = ""  # --embedder: the servers' memory.embedder (default: the project's, onnx)
OPS_TARGET = 1_000.0
P99_TARGET = 0.050
WORKER_PROCESSES = 2


# ---------------------------------------------------------------------------------------------
# Worker processes: threads of agents, started together, reporting JSON


def _agent_loop(
    kind: str, target: str, name: str, peers: list[str], go: threading.Event, stop_at: list[float], out: dict[str, Any]
) -> None:
    rng = random.Random(name)
    latencies: dict[str, list[float]] = defaultdict(list)
    completed: list[str] = []
    errors: list[str] = []
    if kind == "http":
        try:
            agent = HttpAgent(int(target), name)
        except Exception as error:
            out[name] = {"latencies": {}, "completed": [], "errors": [f"{name}: could not connect: {error}"]}
            return

        def claim() -> str | None:
            return agent.call("claim_task", {}).get("id")

        def complete(task_id: str) -> None:
            agent.call("complete_task", {"task_id": task_id, "summary": f"done by {name}"})

        def mail() -> None:
            agent.call("send_mail", {"to": [rng.choice(peers)], "subject": "status", "body": "x" * 200})
    else:
        conn = raw_connect(Path(target))

        def claim() -> str | None:
            return raw_claim(conn, name)

        def complete(task_id: str) -> None:
            raw_complete(conn, name, task_id, f"done by {name}")

        def mail() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO raw_messages(sender, recipient, subject, body, at) VALUES (?, ?, 'status', ?, ?)",
                (name, rng.choice(peers), "x" * 200, time.time_ns()),
            )
            conn.execute("COMMIT")

    try:  # one untimed round: sessions warm, the embedding model loaded (a completion is remembered)
        warm = claim()
        if warm is not None:
            complete(warm)
            completed.append(warm)
        mail()
    except Exception as error:
        errors.append(f"{name}: warm-up: {error}")
    go.wait()
    while time.monotonic() < stop_at[0] and not errors:
        try:
            start = time.perf_counter()
            task_id = claim()
            latencies["claim_task"].append(time.perf_counter() - start)
            if task_id is None:
                break
            start = time.perf_counter()
            complete(task_id)
            latencies["complete_task"].append(time.perf_counter() - start)
            completed.append(task_id)
            start = time.perf_counter()
            mail()
            latencies["send_mail"].append(time.perf_counter() - start)
        except Exception as error:  # recorded, and the agent stops: a benchmark must not hide errors
            errors.append(f"{name}: {error}")
            break
    out[name] = {"latencies": latencies, "completed": completed, "errors": errors}


def worker_main(argv: list[str]) -> None:
    """`bench_http.py _worker KIND TARGET SECONDS NAME…`: prints `ready`, waits for `go`, runs, prints JSON."""
    kind, target, seconds, names = argv[0], argv[1], float(argv[2]), argv[3:]
    peers = json.loads(sys.stdin.readline())
    go = threading.Event()
    stop_at = [0.0]
    out: dict[str, Any] = {}
    threads = [
        threading.Thread(
            target=_agent_loop, args=(kind, target, n, [p for p in peers if p != n] or [n], go, stop_at, out)
        )
        for n in names
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.5 if kind == "raw" else 5.0)  # sessions open and warm before the window starts
    print("ready", flush=True)
    sys.stdin.readline()
    stop_at[0] = time.monotonic() + seconds
    go.set()
    for thread in threads:
        thread.join()
    print(json.dumps(out), flush=True)


def run_agents(kind: str, target: str, agents: int, seconds: float) -> dict[str, Any]:
    names = [f"agent-{i:02d}" for i in range(agents)]
    groups = [names[i::WORKER_PROCESSES] for i in range(WORKER_PROCESSES)]
    workers = [
        subprocess.Popen(
            [PYTHON, __file__, "_worker", kind, target, str(seconds), *group],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=subprocess_env(Path(target) if kind == "raw" else REPO),
        )
        for group in groups
        if group
    ]
    for worker in workers:
        assert worker.stdin is not None and worker.stdout is not None
        worker.stdin.write(json.dumps(names) + "\n")
        worker.stdin.flush()
    for worker in workers:
        assert worker.stdout is not None
        line = worker.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"worker did not start: {line!r}")
    started = time.monotonic()
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    merged: dict[str, Any] = {}
    for worker in workers:
        out, _ = worker.communicate(timeout=seconds + 300)
        merged.update(json.loads(out.strip().splitlines()[-1]))
    wall = time.monotonic() - started
    latencies: dict[str, list[float]] = defaultdict(list)
    completed: list[str] = []
    errors: list[str] = []
    for result in merged.values():
        for tool, values in result["latencies"].items():
            latencies[tool] += values
        completed += result["completed"]
        errors += result["errors"]
    return {"wall": wall, "latencies": latencies, "completed": completed, "errors": errors}


# ---------------------------------------------------------------------------------------------
# Set-up: a project with ready tasks, a server, raw baselines


def make_project(root: Path, tasks: int, db_url: str | None) -> tuple[Path, dict[str, str]]:
    project = root / "project"
    project.mkdir()
    extra = {"JETPACK_DB_URL": db_url} if db_url else {}
    if EMBEDDER:
        extra["JETPACK_EMBEDDER"] = EMBEDDER
    env = subprocess_env(project, **extra)
    subprocess.run([PYTHON, "-m", "jetpack", "init"], env=env, cwd=project, check=True, capture_output=True)
    config = project / ".jetpack" / "config.toml"
    config.write_text(config.read_text().replace("[server]\n", "[server]\nrate_limit_per_second = 0\n", 1))
    plan = root / "plan.json"
    plan.write_text(json.dumps([{"title": f"http task {i}"} for i in range(tasks)]))
    subprocess.run(
        [PYTHON, "-m", "jetpack", "task", "add", "--from-file", str(plan), "--json"],
        env=env,
        cwd=project,
        check=True,
        capture_output=True,
    )
    return project, env


def start_server(project: Path, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """The server, its log in ``server.log`` of the project (a pipe nobody reads would stall it once full)."""
    log = project / "server.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [PYTHON, "-m", "jetpack", "serve", "--http", "--port", str(port)],
            env=env,
            cwd=project,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"server did not start; the end of {log}:\n{log.read_text(errors='replace')[-2000:]}")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(60)
    except subprocess.TimeoutExpired:
        server.kill()


def raw_project(root: Path, tasks: int) -> Path:
    path = root / "raw.db"
    conn = raw_create(path)
    raw_insert_flat(conn, tasks)
    conn.execute(
        "CREATE TABLE raw_messages(id INTEGER PRIMARY KEY, sender TEXT, recipient TEXT, subject TEXT, "
        "body TEXT, at INTEGER)"
    )
    conn.close()
    return path


def http_round(report: Report, label: str, agents: int, seconds: float, db_url: str | None, targets: bool) -> None:
    with temp_dir("http") as root:
        # tursodb answers ~100 requests/s (10 ms each, one at a time): a few thousand tasks last the window
        project, env = make_project(root, tasks=agents * 400 if db_url is None else 3_000, db_url=db_url)
        port = free_port()
        server = start_server(project, env, port)
        try:
            result = run_agents("http", str(port), agents, seconds)
        finally:
            stop_server(server)
    rows(report, label, result, targets=targets)


def rows(report: Report, label: str, result: dict[str, Any], *, targets: bool) -> dict[str, float]:
    lat, wall = result["latencies"], result["wall"]
    pairs = len(lat["complete_task"]) / wall
    messages = len(lat["send_mail"]) / wall
    ops = sum(len(v) for v in lat.values()) / wall
    everything = [x for v in lat.values() for x in v]
    p99 = percentile(everything, 99) if everything else float("nan")
    duplicates = len(result["completed"]) - len(set(result["completed"]))
    report.add(f"{label}: claim+complete pairs/s, messages/s", f"{pairs:,.0f} pairs/s, {messages:,.0f} msgs/s")
    report.add(
        f"{label}: operations/s together",
        f"{ops:,.0f} ops/s",
        *((f">= {OPS_TARGET:,.0f}", ops >= OPS_TARGET) if targets else ()),
    )
    for tool in ("claim_task", "complete_task", "send_mail"):
        if lat[tool]:
            report.add(f"  {tool} p50 / p99", f"{ms(percentile(lat[tool], 50))} / {ms(percentile(lat[tool], 99))}")
    report.add(
        f"{label}: p99 of every call",
        ms(p99),
        *((f"<= {ms(P99_TARGET)}", p99 <= P99_TARGET) if targets else ()),
    )
    report.add(f"{label}: tasks completed twice / errors", f"{duplicates} / {len(result['errors'])}")
    for error in result["errors"][:3]:
        report.add("  error", error[:150])
    return {"ops": ops}


# ---------------------------------------------------------------------------------------------
# c) the remote adapter against raw Hrana requests


def adapter_overhead(report: Report, calls: int) -> None:
    import httpx2

    from jetpack.store import Statement
    from jetpack.store.libsql import LibSQLDataLayer

    with temp_dir("hrana") as root:
        server = start_tursodb(root / "bench.db")
        try:
            store = LibSQLDataLayer(server.url, None)
            store.execute("CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT)")
            read_sql, write_sql = "SELECT k, v FROM kv WHERE k = :k", "INSERT INTO kv(k, v) VALUES (:k, :v) RETURNING k"

            def adapter_read(i: int) -> None:
                store.query(read_sql, {"k": i})

            def adapter_write(i: int) -> None:
                store.write([Statement(write_sql, {"k": i, "v": "value"})])

            with httpx2.Client(timeout=30) as client:

                def post(requests: list[dict[str, Any]]) -> None:
                    response = client.post(f"{server.url}/v2/pipeline", json={"requests": requests})
                    response.raise_for_status()

                def raw_read(i: int) -> None:
                    post(
                        [
                            {
                                "type": "execute",
                                "stmt": {
                                    "sql": "SELECT k, v FROM kv WHERE k = ?",
                                    "args": [{"type": "integer", "value": str(i)}],
                                },
                            }
                        ]
                    )

                def raw_write(i: int) -> None:
                    post(
                        [
                            {
                                "type": "execute",
                                "stmt": {
                                    "sql": "INSERT INTO kv(k, v) VALUES (?, ?) RETURNING k",
                                    "args": [{"type": "integer", "value": str(i)}, {"type": "text", "value": "value"}],
                                },
                            }
                        ]
                    )

                figures = {}
                for name, fn, offset in (
                    ("adapter read", adapter_read, 0),
                    ("raw read", raw_read, 0),
                    ("adapter write", adapter_write, 0),
                    ("raw write", raw_write, 1_000_000),
                ):
                    samples = []
                    for i in range(calls):
                        start = time.perf_counter()
                        fn(offset + i)
                        samples.append(time.perf_counter() - start)
                    figures[name] = percentile(samples, 50)
            store.close()
        finally:
            server.stop()
    for kind in ("read", "write"):
        adapter, raw = figures[f"adapter {kind}"], figures[f"raw {kind}"]
        report.add(
            f"c) one {kind}: LibSQLDataLayer vs raw POST /v2/pipeline, p50",
            f"{ms(adapter)} vs {ms(raw)}  (raw / adapter {raw / adapter:.0%})",
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        worker_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--agents", type=int, help="concurrent agents (default 50; quick 10)")
    parser.add_argument("--seconds", type=float, help="length of each measured window (default 10; quick 3)")
    parser.add_argument("--skip-remote", action="store_true", help="only the embedded DataLayer")
    parser.add_argument(
        "--embedder", choices=("onnx", "hash"), help="the servers' embedder (hash: no model runs in the loop)"
    )
    args = parser.parse_args()
    global EMBEDDER  # noqa: PLW0603 - the worker-side code reads it, set once here
    EMBEDDER = args.embedder or ""
    agents = args.agents or (10 if args.quick else 50)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    wait_for_quiet(args.wait_idle)
    report = Report(f"bench_http: {agents} agents over Streamable HTTP, {seconds:g} s windows")
    http_round(report, "a) embedded", agents, seconds, None, targets=True)
    with temp_dir("raw") as root:
        path = raw_project(root, agents * 4_000)
        raw = rows(report, "a) raw SQLite, same loop", run_agents("raw", str(path), agents, seconds), targets=False)
    report.add("a) raw SQLite operations/s (for scale)", f"{raw['ops']:,.0f} ops/s")
    if not args.skip_remote:
        if tursodb_binary() is None:
            report.add("b) tursodb", "not installed (./scripts/test installs it)")
        else:
            with temp_dir("turso") as root:
                turso = start_tursodb(root / "shared.db")
                try:
                    http_round(report, "b) tursodb", agents, seconds, turso.url, targets=False)
                finally:
                    turso.stop()
            adapter_overhead(report, 100 if args.quick else 1_000)
    report.print()


if __name__ == "__main__":
    main()
