"""Cold start of ``jetpack serve``: spawn to the first tool result over stdio.

    .venv/bin/python benchmarks/bench_cold_start.py [--quick] [--wait-idle S] [--runs N]

Each run spawns ``python -m jetpack serve`` on an existing project (a database holding 100
tasks), sends initialize (protocolVersion 2025-06-18), notifications/initialized and one
tools/call, and measures the wall time from spawn to the tool's response. Median of N runs
(default 10; quick 2) after one untimed warm-up run. Target: list_tasks <= 0.8 s.

For reference: ``python -c pass``, ``python -c "import mcp.server.mcpserver"`` and the
import of Jetpack's serve path, and where that import time goes (``-X importtime``, self
time summed by top-level package).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from _common import (
    PYTHON,
    REPO,
    Report,
    StdioClient,
    add_common_arguments,
    hub_pid,
    jetpack_settings,
    ms,
    subprocess_env,
    temp_dir,
    wait_for_quiet,
)

from jetpack.actor import Actor
from jetpack.store import open_store
from jetpack.tasks import NewTask, QueueContext, create_tasks

TARGET = 0.8
# What `jetpack serve` imports, as it imports them (the SDK package's __init__ skipped, see jetpack/lazy.py).
SERVE_IMPORTS = (
    "import jetpack.cli.main; from jetpack.lazy import skip_package_init; skip_package_init('mcp'); "
    "import jetpack.server, jetpack.server.stdio"
)


def make_project(root: Path, tasks: int = 100) -> Path:
    project = root / "project"
    settings = jetpack_settings(project)
    store = open_store(settings.db_path)
    ctx = QueueContext(store=store, settings=settings.tasks)
    create_tasks(ctx, Actor("bench-planner"), [NewTask(title=f"task {i}", priority=i % 5) for i in range(tasks)])
    store.close()
    return project


def first_result(
    project: Path, tool: str, arguments: dict[str, object], agent: str, *, hub: bool = False
) -> tuple[float, float]:
    """Spawn a server (with ``hub``: a relay); return (seconds to the initialize result, seconds
    to the tool result)."""
    start = time.perf_counter()
    client = StdioClient(project, agent, env={"JETPACK_HUB": "1"} if hub else None)
    client.initialize()
    initialized = time.perf_counter() - start
    client.call(tool, arguments)
    done = time.perf_counter() - start
    client.close()
    return initialized, done


def stop_hub(project: Path) -> None:
    """Stop the project's hub, if one runs, and wait until it has gone."""
    from jetpack.processes import process_alive

    pid = hub_pid(project)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def median_of(runs: int, measure: Callable[[int], tuple[float, float]]) -> tuple[float, float]:
    measure(-1)  # warm-up: .pyc files, the OS page cache
    samples = [measure(i) for i in range(runs)]
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def python_time(code: str, runs: int) -> float:
    env = subprocess_env(REPO)

    def once() -> float:
        start = time.perf_counter()
        subprocess.run([PYTHON, "-c", code], check=True, env=env, cwd=str(REPO))
        return time.perf_counter() - start

    once()
    return statistics.median(once() for _ in range(min(runs, 5)))


def import_breakdown(top: int = 8) -> list[tuple[str, float]]:
    """Self import time (s) summed per top-level package for the serve path's imports."""
    result = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", SERVE_IMPORTS],
        check=True,
        capture_output=True,
        text=True,
        env=subprocess_env(REPO),
        cwd=str(REPO),
    )
    by_package: dict[str, float] = defaultdict(float)
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        by_package[name.split(".")[0]] += int(self_us) / 1e6
    return sorted(by_package.items(), key=lambda item: -item[1])[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--runs", type=int, help="timed runs per measure (default 10; quick 2)")
    args = parser.parse_args()
    runs = args.runs or (2 if args.quick else 10)
    wait_for_quiet(args.wait_idle)
    report = Report(f"bench_cold_start: median of {runs} runs")

    with temp_dir("cold") as root:
        project = make_project(root)
        init_list, list_total = median_of(runs, lambda i: first_result(project, "list_tasks", {"limit": 5}, "cold"))
        # a fresh agent name per run: the first claim also registers the agent (a write)
        _, claim_total = median_of(runs, lambda i: first_result(project, "claim_task", {}, f"cold-{i + 1}"))

        def fresh(i: int) -> tuple[float, float]:
            empty = root / f"fresh-{i + 1}"
            empty.mkdir()
            return first_result(empty, "list_tasks", {"limit": 5}, "cold")

        _, fresh_total = median_of(max(2, runs // 2), fresh)

        # jetpack serve --hub: the relay alone while the hub runs, and the first agent, which starts it
        stop_hub(project)
        _, hub_warm = median_of(runs, lambda i: first_result(project, "list_tasks", {"limit": 5}, "cold", hub=True))

        def hub_start(i: int) -> tuple[float, float]:
            stop_hub(project)
            return first_result(project, "list_tasks", {"limit": 5}, "cold", hub=True)

        _, hub_cold = median_of(max(2, runs // 2), hub_start)
        stop_hub(project)

    report.section("spawn -> first tool result over stdio")
    report.add("initialize result", ms(init_list))
    report.add("list_tasks result", ms(list_total), f"<= {ms(TARGET)}", list_total <= TARGET)
    report.add("claim_task result (registers the agent)", ms(claim_total), f"<= {ms(TARGET)}", claim_total <= TARGET)
    report.add("list_tasks in a new project (creates the DB)", ms(fresh_total))
    report.add(
        "jetpack serve --hub, hub running: list_tasks result", ms(hub_warm), f"<= {ms(TARGET)}", hub_warm <= TARGET
    )
    report.add("jetpack serve --hub, first agent (starts the hub): list_tasks", ms(hub_cold))

    report.section("reference")
    report.add('python -c "pass"', ms(python_time("pass", runs)))
    report.add('python -c "import mcp.server.mcpserver"', ms(python_time("import mcp.server.mcpserver", runs)))
    report.add("python -c: imports of the serve path", ms(python_time(SERVE_IMPORTS, runs)))
    report.add("  (jetpack.cli.main, then jetpack.server and .stdio as serve does)", "")
    report.section("import self time by package (-X importtime, one run)")
    for package, seconds in import_breakdown():
        report.add(f"  {package}", ms(seconds))
    report.print()


if __name__ == "__main__":
    main()
