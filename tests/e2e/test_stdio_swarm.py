"""Acceptance: 8 OS processes, each a real MCP client over stdio talking to its own `jetpack serve`
on one shared database, claim and complete from 2,000 ready tasks until none are left: every task
done exactly once, none lost.

Each worker is tests/e2e/swarm_worker.py in its own process; it spawns its own server through the
SDK's stdio client. Half the workers use the initialize handshake, half the SDK's "auto" mode.
The same swarm runs once more through one hub (`jetpack serve --hub`, docs/hub.md).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import jetpack_command, subprocess_env
from e2e_helpers import HERE, RawServer, db_path, integrity_check, kill_process, open_db, server_env

pytestmark = pytest.mark.e2e

TASKS = 2000
WORKERS = 8
WORKER_TIMEOUT = 240  # only against hangs


def _add_from_file(project: Path, tmp_path: Path, plan: list[dict[str, Any]]) -> list[dict[str, Any]]:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    env = subprocess_env(project)
    subprocess.run(jetpack_command("init"), env=env, check=True, capture_output=True, cwd=project)
    added = subprocess.run(
        jetpack_command("task", "add", "--from-file", str(path), "--json", "--as", "planner"),
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=project,
    )
    created = json.loads(added.stdout)
    assert created["count"] == len(plan)
    return list(created["created"])


def _run_swarm(project: Path, *extra: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Start WORKERS agent processes at once; wait for all; return their reports."""
    agents = [f"swarm-{n}" for n in range(WORKERS)]
    workers: list[subprocess.Popen[str]] = []
    try:
        for n, agent in enumerate(agents):
            mode = "legacy" if n % 2 == 0 else "auto"  # both protocol eras share the queue
            workers.append(
                subprocess.Popen(
                    [sys.executable, str(HERE / "swarm_worker.py"), str(project), agent, mode, *extra],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=server_env(project, **(env or {})),
                    cwd=str(project),
                )
            )
        reports = []
        for agent, worker in zip(agents, workers, strict=True):
            out, err = worker.communicate(timeout=WORKER_TIMEOUT)
            assert worker.returncode == 0, f"{agent} exited {worker.returncode}:\n{err[-4000:]}"
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            kill_process(worker)
    for report in reports:
        assert report["errors"] == [], f"{report['agent']} saw tool errors: {report['errors'][:5]}"
        assert report["final_reason"], report["agent"]
    return reports


def _assert_each_done_exactly_once(project: Path, reports: list[dict[str, Any]], all_ids: set[str]) -> None:
    completions = Counter(task_id for report in reports for task_id in report["completed"])
    twice = sorted(task_id for task_id, n in completions.items() if n > 1)
    assert twice == [], f"completed by more than one claim: {twice[:10]}"
    assert set(completions) == all_ids, f"lost: {sorted(all_ids - set(completions))[:10]}"
    # The work was actually shared (not a fairness requirement, just that several agents ran at once).
    assert sum(1 for report in reports if report["completed"]) >= 2

    database = db_path(project)
    assert integrity_check(database) == ["ok"]
    with open_db(database) as conn:
        states = dict(conn.execute("SELECT state, count(*) FROM tasks GROUP BY state").fetchall())
        assert states == {"done": len(all_ids)}
        completed_events = dict(
            conn.execute("SELECT task_id, count(*) FROM events WHERE kind = 'completed' GROUP BY task_id").fetchall()
        )
        assert set(completed_events) == all_ids
        assert set(completed_events.values()) == {1}
        claims = dict(
            conn.execute("SELECT task_id, count(*) FROM events WHERE kind = 'claimed' GROUP BY task_id").fetchall()
        )
        assert set(claims) == all_ids
        assert set(claims.values()) == {1}, "a task was claimed more than once"
        holders = dict(conn.execute("SELECT id, assignee FROM tasks").fetchall())
    by_agent = {task_id: report["agent"] for report in reports for task_id in report["completed"]}
    assert holders == by_agent, "the database and the agents disagree about who completed what"


def test_eight_stdio_agents_complete_2000_tasks_exactly_once(project: Path, tmp_path: Path) -> None:
    created = _add_from_file(
        project, tmp_path, [{"title": f"swarm task {i}", "labels": ["swarm"]} for i in range(TASKS)]
    )
    assert {c["state"] for c in created} == {"ready"}
    all_ids = {c["id"] for c in created}
    assert len(all_ids) == TASKS
    reports = _run_swarm(project)
    assert sum(len(report["completed"]) for report in reports) == TASKS
    _assert_each_done_exactly_once(project, reports, all_ids)


def test_eight_stdio_agents_through_one_hub_complete_2000_tasks_exactly_once(project: Path, tmp_path: Path) -> None:
    """The same swarm with `jetpack serve --hub`: the SDK's stdio client in both protocol eras, every
    agent's relay handing its pipes to one hub."""
    created = _add_from_file(project, tmp_path, [{"title": f"hub task {i}"} for i in range(TASKS)])
    config = project / ".jetpack" / "config.toml"
    config.write_text(config.read_text().replace("[server]\n", "[server]\nhub_idle_seconds = 1\n", 1))
    runtime = Path(tempfile.mkdtemp(prefix="jp", dir="/tmp"))  # short: a socket path has ~100 bytes
    try:
        reports = _run_swarm(project, env={"JETPACK_HUB": "1", "XDG_RUNTIME_DIR": str(runtime)})
        hubs = list(runtime.glob("*/*.lock"))
        assert len(hubs) == 1, "the eight agents should have shared one hub"
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
    assert sum(len(report["completed"]) for report in reports) == TASKS
    _assert_each_done_exactly_once(project, reports, {c["id"] for c in created})
    with open_db(db_path(project)) as conn:
        ended = conn.execute("SELECT count(*) FROM agents WHERE name LIKE 'swarm-%' AND ended_at IS NOT NULL")
        assert ended.fetchone()[0] == WORKERS, "each relay's session ends when its client closes it"


LAYERS = 8
WIDTH = 40


def test_swarm_respects_dependencies(project: Path, tmp_path: Path) -> None:
    """A layered DAG drained by the same 8 agents: no task is claimed before all its blockers are done."""
    rng = random.Random(7)
    plan = []
    for layer in range(LAYERS):
        for n in range(WIDTH):
            spec: dict[str, Any] = {"title": f"layer {layer} task {n}", "ref": f"L{layer}-{n}"}
            if layer:
                spec["depends_on"] = [f"L{layer - 1}-{d}" for d in rng.sample(range(WIDTH), 2)]
            plan.append(spec)
    created = _add_from_file(project, tmp_path, plan)
    ids = {c["ref"]: c["id"] for c in created}
    assert sum(1 for c in created if c["state"] == "ready") == WIDTH

    reports = _run_swarm(project, "drain")
    _assert_each_done_exactly_once(project, reports, set(ids.values()))

    with open_db(db_path(project)) as conn:
        claimed_at = dict(conn.execute("SELECT task_id, id FROM events WHERE kind = 'claimed'").fetchall())
        completed_at = dict(conn.execute("SELECT task_id, id FROM events WHERE kind = 'completed'").fetchall())
        unblocked_at = dict(conn.execute("SELECT task_id, id FROM events WHERE kind = 'unblocked'").fetchall())
        links = conn.execute("SELECT task_id, depends_on FROM dependencies").fetchall()
        kinds = dict(conn.execute("SELECT id, kind FROM events").fetchall())
    assert len(links) == (LAYERS - 1) * WIDTH * 2
    for task_id, blocker in links:
        assert completed_at[blocker] < unblocked_at[task_id] < claimed_at[task_id], (task_id, blocker)
    # Became ready with its last blocker's completion, in the same transaction: nothing but other
    # unblocked events were logged between that completion and this task's unblocking.
    assert set(unblocked_at) == {ids[f"L{layer}-{n}"] for layer in range(1, LAYERS) for n in range(WIDTH)}
    for task_id, unblocked in unblocked_at.items():
        last = max(completed_at[b] for t, b in links if t == task_id)
        between = {kinds[event] for event in range(last + 1, unblocked)}
        assert between <= {"unblocked"}, (task_id, between)


def test_a_live_agents_name_cannot_be_taken_by_another_server(project: Path) -> None:
    with RawServer(project, JETPACK_AGENT="twin") as first, RawServer(project, JETPACK_AGENT="twin") as second:
        first.handshake()
        second.handshake()
        mine = first.call_tool("register_agent", {"name": "twin"})
        assert mine.get("isError") is not True, mine
        taken = second.call_tool("list_tasks", {})
        assert taken["isError"] is True
        message = taken["content"][0]["text"]
        assert "twin" in message
        assert str(first.proc.pid) in message
        chosen = second.call_tool("register_agent", {"name": "twin-2"})
        assert chosen.get("isError") is not True, chosen

        # Once the first session ends cleanly the name is free at once.
        assert first.close_stdin_and_wait() == 0, first.stderr
        again = second.call_tool("register_agent", {"name": "twin"})
        assert again.get("isError") is not True, again
        assert again["structuredContent"]["name"] == "twin"
