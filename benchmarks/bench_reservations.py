"""File reservations at scale: reserve_files and check_files with 10,000 active reservations.

    .venv/bin/python benchmarks/bench_reservations.py [--quick] [--wait-idle S] [--reservations N] [--calls N]
                                                      [--profile]

The DB holds N (default 10,000) active reservations of H (default 200) agents, spread like a
busy monorepo: repo-relative files ``src/<module>/<sub>/<file>.py`` (60 modules x 8 subpackages x
40 files), directory patterns ``src/<module>/**`` (3%), globs ``src/<module>/*.py`` (2%) and ten
root-level globs (``*.md``, ``*.toml``, ...). One more agent then, call after call:

* ``reserve_files`` (advisory) of 1-3 paths (files; one call in five also a ``src/<m>/<s>/**``),
* ``release_files(all=true)`` of what it just reserved (so the table stays at N; information),
* ``check_files`` of 1-5 file paths.

Each is timed twice: at the service level (jetpack.reservations.service, one process, no MCP)
and over stdio MCP (one agent; the minimal JSON-RPC client of benchmarks/_common.py, latency at
the client). Target: p50 <= 2 ms for reserve_files and check_files, held at the stdio level
(what an agent waits for); the service level is reported beside it.

Beside it, raw SQLite on the same DB through a bare sqlean connection (the pragmas of
_common.raw_connect), replaying exactly the statements the service sent in its run (recorded by a
wrapper around its DataLayer; each write batch in one BEGIN IMMEDIATE transaction): no pattern
matching, no models, no Python service layer. Also the same replay with the candidate query (the
prefix lookup of service._candidate_rows) written as two searches of the prefix index, UNION ALL,
instead of one query with an OR: what the index can do. The report prints SQLite's plan for the
service's candidate query. --profile adds a cProfile of the service-level loop.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import pstats
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from _common import (
    Report,
    StdioClient,
    add_common_arguments,
    jetpack_settings,
    ms,
    percentile,
    raw_connect,
    temp_dir,
    wait_for_quiet,
)

from jetpack.reservations.patterns import literal_prefix, normalise_pattern
from jetpack.reservations.service import (
    ReservationContext,
    ReserveMode,
    check_files,
    release_files,
    reserve_files,
)
from jetpack.store import DataLayer, Statement, open_store

P50_TARGET = 0.002
MODULES, SUBS, FILES = 60, 8, 40
DIR_SHARE, GLOB_SHARE = 0.03, 0.02
ROOT_GLOBS = ("*.md", "*.toml", "*.cfg", "*.txt", "*.ini", "*.yaml", "*.json", "*.lock", "*.sh", "Dockerfile*")
ME = "bench-agent"


# ---------------------------------------------------------------------------------------------
# The reservations


def a_file(rng: random.Random) -> str:
    return f"src/mod{rng.randrange(MODULES):02d}/sub{rng.randrange(SUBS)}/file{rng.randrange(FILES):02d}.py"


def held_patterns(rng: random.Random, count: int) -> list[str]:
    patterns = list(ROOT_GLOBS[: min(len(ROOT_GLOBS), count)])
    while len(patterns) < count:
        draw = rng.random()
        if draw < DIR_SHARE:
            patterns.append(f"src/mod{rng.randrange(MODULES):02d}/**")
        elif draw < DIR_SHARE + GLOB_SHARE:
            patterns.append(f"src/mod{rng.randrange(MODULES):02d}/*.py")
        else:
            patterns.append(a_file(rng))
    return patterns


def fill(store: DataLayer, count: int, holders: int, rng: random.Random) -> dict[str, int]:
    """``count`` active reservations (rows as reserve_files writes them), one transaction per 2,000."""
    now = time.time_ns() // 1_000_000
    patterns = held_patterns(rng, count)
    rng.shuffle(patterns)
    seen: set[tuple[str, str]] = set()
    rows: list[dict[str, Any]] = []
    for i, raw in enumerate(patterns):
        pattern = normalise_pattern(raw)
        agent = f"holder-{rng.randrange(holders):03d}"
        while (agent, pattern) in seen:  # an agent holds a pattern once
            agent = f"holder-{rng.randrange(holders):03d}"
        seen.add((agent, pattern))
        rows.append(
            {
                "agent": agent,
                "pattern": pattern,
                "prefix": literal_prefix(pattern),
                "now": now - rng.randrange(3_600_000),
                "expires": now + 86_400_000 + i,
            }
        )
    sql = """INSERT INTO reservations(agent, pattern, prefix, shared, exclusive, reason, task_id, intent,
            created_at, expires_at)
        VALUES (:agent, :pattern, :prefix, 0, 0, NULL, NULL, 0, :now, :expires)"""
    for start in range(0, len(rows), 2000):
        store.write([Statement(sql, r) for r in rows[start : start + 2000]])
    kinds = {"files": 0, "src/<m>/**": 0, "src/<m>/*.py": 0, "root globs": 0}
    for r in rows:
        kinds[kind_of(r["pattern"])] += 1
    return kinds


def kind_of(pattern: str) -> str:
    if "/" not in pattern:
        return "root globs"
    if pattern.endswith("/**"):
        return "src/<m>/**"
    return "src/<m>/*.py" if pattern.endswith("/*.py") else "files"


def workload(rng: random.Random, calls: int) -> list[tuple[list[str], list[str]]]:
    """Per call: (paths to reserve, paths to check)."""
    out = []
    for _ in range(calls):
        reserve = [a_file(rng) for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.2:
            reserve[-1] = f"src/mod{rng.randrange(MODULES):02d}/sub{rng.randrange(SUBS)}/**"
        out.append((reserve, [a_file(rng) for _ in range(rng.randint(1, 5))]))
    return out


# ---------------------------------------------------------------------------------------------
# The three levels


class Recorder:
    """A DataLayer wrapper that notes every statement the service sends (for the raw replay)."""

    def __init__(self, inner: DataLayer) -> None:
        self.inner = inner
        self.log: list[tuple[str, list[tuple[str, Any]]]] = []

    def query(self, sql: str, params: Any = None) -> list[Any]:
        self.log.append(("read", [(sql, params if params is not None else {})]))
        return self.inner.query(sql, params)

    def write(self, statements: list[Statement]) -> list[list[Any]]:
        self.log.append(("write", [(st.sql, st.params) for st in statements]))
        return self.inner.write(statements)

    def execute(self, sql: str, params: Any = None) -> list[Any]:
        self.log.append(("write", [(sql, params if params is not None else {})]))
        return self.inner.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def take(self) -> list[tuple[str, list[tuple[str, Any]]]]:
        taken, self.log = self.log, []
        return taken


def service_run(ctx: ReservationContext, work: list[tuple[list[str], list[str]]]) -> dict[str, Any]:
    """reserve, release, check per call; with a Recorder as the store, also what each call sent."""
    recorder = ctx.store if isinstance(ctx.store, Recorder) else None
    reserve_t: list[float] = []
    release_t: list[float] = []
    check_t: list[float] = []
    sent: list[dict[str, Any]] = []
    conflicts = 0
    for reserve, check in work:
        t0 = time.perf_counter()
        reserve_files(ctx, ME, reserve, mode=ReserveMode.ADVISORY)
        t1 = time.perf_counter()
        reserved = recorder.take() if recorder else []
        t1 = time.perf_counter() if recorder else t1
        release_files(ctx, ME, everything=True)
        t2 = time.perf_counter()
        released = recorder.take() if recorder else []
        t2 = time.perf_counter() if recorder else t2
        conflicts += len(check_files(ctx, ME, check))
        t3 = time.perf_counter()
        if recorder:
            sent.append({"reserve": reserved, "release": released, "check": recorder.take()})
        reserve_t.append(t1 - t0)
        release_t.append(t2 - t1)
        check_t.append(t3 - t2)
    return {"reserve": reserve_t, "release": release_t, "check": check_t, "conflicts": conflicts, "sent": sent}


def stdio_run(root: Path, work: list[tuple[list[str], list[str]]], warm: int) -> dict[str, Any]:
    client = StdioClient(root, ME)
    try:
        client.initialize()
        for reserve, check in work[:warm]:  # registers the agent, warms the server's code paths
            client.call("reserve_files", {"paths": reserve, "mode": "advisory"})
            client.call("release_files", {"all": True})
            client.call("check_files", {"paths": check})
        reserve_t: list[float] = []
        release_t: list[float] = []
        check_t: list[float] = []
        conflicts = 0
        cpu0, server0 = time.process_time(), client.cpu_seconds()
        for reserve, check in work[warm:]:
            t0 = time.perf_counter()
            client.call("reserve_files", {"paths": reserve, "mode": "advisory"})
            t1 = time.perf_counter()
            client.call("release_files", {"all": True})
            t2 = time.perf_counter()
            conflicts += len(client.call("check_files", {"paths": check}).get("conflicts", ()))
            t3 = time.perf_counter()
            reserve_t.append(t1 - t0)
            release_t.append(t2 - t1)
            check_t.append(t3 - t2)
        client_cpu, server_cpu = time.process_time() - cpu0, client.cpu_seconds() - server0
    finally:
        client.close()
    return {
        "reserve": reserve_t,
        "release": release_t,
        "check": check_t,
        "conflicts": conflicts,
        "client_cpu": client_cpu,
        "server_cpu": server_cpu,
    }


# The same candidates as service._candidate_rows, written as two searches of the prefix index (one
# per arm of its OR) so that SQLite cannot turn them into a scan of every active reservation.
INDEXED_CANDIDATES = """SELECT * FROM reservations
    WHERE released_at IS NULL AND expires_at > :now AND agent IS NOT :me
      AND prefix IN (SELECT value FROM json_each(:above))
    UNION ALL
    SELECT * FROM reservations
    WHERE released_at IS NULL AND expires_at > :now AND agent IS NOT :me
      AND prefix >= :below_lo AND prefix < :below_hi"""


def is_candidate_query(sql: str) -> bool:
    return ":below_lo" in sql and "json_each(:above)" in sql


def raw_replay(db: Path, sent: list[dict[str, Any]], version: str, *, indexed: bool) -> dict[str, Any]:
    """Raw SQLite running the statements the service sent, in order, on a bare connection: reads as
    they were, each write batch in one BEGIN IMMEDIATE transaction. ``indexed`` swaps the candidate
    query for INDEXED_CANDIDATES (same parameters). The reservations version is reset first, so the
    replayed write guards see the values they saw in the service run."""
    conn = raw_connect(db)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'reservations_version'", (version,))

    def run(calls: list[tuple[str, list[tuple[str, Any]]]]) -> int:
        rows = 0
        for kind, statements in calls:
            if kind == "write":
                conn.execute("BEGIN IMMEDIATE")
            for sql, params in statements:
                statement = INDEXED_CANDIDATES if indexed and is_candidate_query(sql) else sql
                rows += len(conn.execute(statement, params).fetchall())
            if kind == "write":
                conn.execute("COMMIT")
        return rows

    times: dict[str, list[float]] = {"reserve": [], "release": [], "check": []}
    candidates = lookups = 0
    try:
        for call in sent:
            for key, samples in times.items():
                t0 = time.perf_counter()
                rows = run(call[key])
                samples.append(time.perf_counter() - t0)
                if key == "check":
                    candidates += rows
                    lookups += sum(1 for _, sts in call[key] for sql, _ in sts if is_candidate_query(sql))
    finally:
        conn.close()
    return {**times, "candidates_per_path": candidates / max(1, lookups)}


def query_plan(db: Path, sent: list[dict[str, Any]]) -> str:
    """SQLite's plan for the service's candidate query (the first one it sent for a check)."""
    sql, params = next(st for call in sent for _, sts in call["check"] for st in sts if is_candidate_query(st[0]))
    conn = raw_connect(db)
    try:
        plan = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    finally:
        conn.close()
    return "; ".join(str(row[3]) for row in plan if "reservations" in str(row[3]))


# ---------------------------------------------------------------------------------------------


def p50_p99(values: list[float]) -> str:
    return f"{ms(percentile(values, 50))} / {ms(percentile(values, 99))}"


def context_for(root: Path) -> tuple[DataLayer, ReservationContext]:
    """The store and ReservationContext a server builds for this project (background checkpoints)."""
    settings = jetpack_settings(root)
    store = open_store(settings.db_path)
    store.checkpoint_in_background()  # type: ignore[attr-defined]
    return store, ReservationContext.for_settings(settings, store)


def main() -> None:
    logging.getLogger("jetpack").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--reservations", type=int, help="active reservations in the DB (default 10000; quick 2000)")
    parser.add_argument("--holders", type=int, help="agents holding them (default 200; quick 50)")
    parser.add_argument("--calls", type=int, help="timed calls of each kind per level (default 1000; quick 200)")
    parser.add_argument("--profile", action="store_true", help="also cProfile the service-level loop")
    args = parser.parse_args()
    count = args.reservations or (2000 if args.quick else 10_000)
    holders = args.holders or (50 if args.quick else 200)
    calls = args.calls or (200 if args.quick else 1000)
    warm = 20
    wait_for_quiet(args.wait_idle)

    report = Report(
        f"bench_reservations: reserve_files / check_files, {count:,} active reservations "
        f"({'quick' if args.quick else 'full'})"
    )
    rng = random.Random(7)
    with temp_dir("reservations") as root:
        store, ctx = context_for(root)
        t0 = time.perf_counter()
        kinds = fill(store, count, holders, rng)
        fill_s = time.perf_counter() - t0
        work = workload(rng, calls + warm)
        service_run(ctx, work[:warm])  # warm caches (pattern memo, statements) like a running server
        version = store.query("SELECT value FROM meta WHERE key = 'reservations_version'")[0]["value"]
        service = service_run(replace(ctx, store=Recorder(store)), work[warm:])  # type: ignore[arg-type]
        active = store.query("SELECT count(*) AS n FROM reservations WHERE released_at IS NULL")[0]["n"]
        store.close()
        stdio = stdio_run(root, work, warm)
        db = Path(jetpack_settings(root).db_path)
        plan = query_plan(db, service["sent"])
        raw = raw_replay(db, service["sent"], version, indexed=False)
        indexed = raw_replay(db, service["sent"], version, indexed=True)
        if args.profile:
            store, ctx = context_for(root)
            profiler = cProfile.Profile()
            profiler.enable()
            service_run(ctx, work[warm:])
            profiler.disable()
            store.close()

    report.section(f"the DB: {count:,} active reservations of {holders} agents (written in {fill_s:.2f} s)")
    report.add("files / src/<m>/** / src/<m>/*.py / root globs", " / ".join(f"{n:,}" for n in kinds.values()))
    report.add("active after the service run (the agent releases what it reserves)", f"{active:,}")
    report.add("candidate rows per checked path (prefix query)", f"{indexed['candidates_per_path']:.1f}")
    report.add("conflicts per check_files call (1-5 paths)", f"{service['conflicts'] / calls:.1f}")
    report.section(f"raw SQLite, same DB, a bare connection replaying the service's statements, {calls} calls")
    report.section(f"   plan of the service's candidate query: {plan}")
    report.add("raw, Jetpack's statements: reserve p50 / p99", p50_p99(raw["reserve"]))
    report.add("raw, Jetpack's statements: check p50 / p99", p50_p99(raw["check"]))
    report.add("raw, candidates as 2 prefix-index searches: reserve p50 / p99", p50_p99(indexed["reserve"]))
    report.add("raw, candidates as 2 prefix-index searches: check p50 / p99", p50_p99(indexed["check"]))
    report.section(f"service level (jetpack.reservations.service, one process), {calls} calls")
    report.add("service reserve_files (1-3 paths) p50 / p99", p50_p99(service["reserve"]))
    report.add("service check_files (1-5 paths) p50 / p99", p50_p99(service["check"]))
    report.add("service release_files(all) p50 / p99", p50_p99(service["release"]))
    for label, base in (("Jetpack's statements", raw), ("2 index searches", indexed)):
        report.add(
            f"service / raw ({label}), p50: reserve, check",
            f"{percentile(service['reserve'], 50) / percentile(base['reserve'], 50):.1f}x, "
            f"{percentile(service['check'], 50) / percentile(base['check'], 50):.1f}x",
        )
    report.section(f"stdio MCP, one agent, latency at the client, {calls} calls (the target is held here)")
    for name, key in (("reserve_files", "reserve"), ("check_files", "check")):
        p50 = percentile(stdio[key], 50)
        report.add(f"stdio {name} p50", ms(p50), f"<= {ms(P50_TARGET)}", p50 <= P50_TARGET)
        report.add(f"stdio {name} p99", ms(percentile(stdio[key], 99)))
    report.add("stdio release_files(all) p50 / p99", p50_p99(stdio["release"]))
    report.add(
        "stdio CPU per reserve+release+check: server / client",
        f"{ms(stdio['server_cpu'] / calls)} / {ms(stdio['client_cpu'] / calls)}",
    )
    report.add(
        "MCP + stdio cost per call (release_files p50, stdio - service)",
        ms(percentile(stdio["release"], 50) - percentile(service["release"], 50)),
    )
    report.print()

    if args.profile:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
        print(f"\n== cProfile of the service-level loop ({calls} x reserve + release + check), cumulative")
        print(out.getvalue())


if __name__ == "__main__":
    main()
