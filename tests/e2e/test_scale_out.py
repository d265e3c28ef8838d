"""Scale-out: two `jetpack serve --http` processes on one libSQL server (`tursodb`) behave as one
Jetpack. 32 agents split across them claim and complete 2,000 tasks, each exactly once; a claim made
through one server is a claim for the other; mail sent through one is in the inbox read through the
other.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import jetpack_command, subprocess_env
from e2e_http import HttpServer, init_project
from http_agent import HttpAgent
from libsql_server import TursoServer, start_tursodb, tursodb_binary

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(tursodb_binary() is None, reason="tursodb not installed (./scripts/test installs it)"),
]

AGENTS = 32
# The acceptance size; CI runs a bounded 500 (JETPACK_SOAK=1 for the full run).
TASKS = 2_000 if os.environ.get("JETPACK_SOAK") == "1" else 500


@pytest.fixture
def turso(tmp_path: Path) -> Any:
    server = start_tursodb(tmp_path / "shared.db")
    yield server
    server.stop()


def _remote_project(root: Path, turso: TursoServer, name: str) -> tuple[Path, dict[str, str]]:
    """A project directory (config only) whose data lives on the libSQL server."""
    project = root / name
    project.mkdir()
    env = {"JETPACK_DB_URL": turso.url}
    init_project(project, rate_limit_per_second=0)
    return project, env


def _run(project: Path, env: dict[str, str], *args: str) -> Any:
    out = subprocess.run(
        jetpack_command(*args),
        env=subprocess_env(project, **env),
        cwd=project,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout) if "--json" in args else out.stdout


def _agent_loop(port: int, name: str, done: list[str], errors: list[str]) -> None:
    try:
        with HttpAgent(port, name) as agent:
            _work(agent, name, done, errors)
    except Exception as error:
        errors.append(f"{name}: {error}")


def _work(agent: HttpAgent, name: str, done: list[str], errors: list[str]) -> None:
    while True:
        claimed = agent.call("claim_task", {})
        if claimed.get("id") is None:
            return
        result = agent.call("complete_task", {"task_id": claimed["id"], "summary": f"done by {name}"})
        if result.get("state") != "done":
            errors.append(f"{name}: complete_task answered {result}")
            return
        done.append(claimed["id"])


def test_two_http_servers_on_one_libsql_server_are_one_jetpack(tmp_path: Path, turso: TursoServer) -> None:
    with contextlib.ExitStack() as cleanup:
        _scale_out(tmp_path, turso, cleanup)


def _scale_out(tmp_path: Path, turso: TursoServer, cleanup: contextlib.ExitStack) -> None:
    project_a, env = _remote_project(tmp_path, turso, "host-a")
    project_b, _ = _remote_project(tmp_path, turso, "host-b")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps([{"title": f"scale-out task {i}"} for i in range(TASKS)]))
    created = _run(project_a, env, "task", "add", "--from-file", str(plan), "--json")
    all_ids = {c["id"] for c in created["created"]}
    assert len(all_ids) == TASKS

    with HttpServer(project_a, **env) as a, HttpServer(project_b, **env) as b:
        # A claim through one server is a claim for the other; mail crosses too.
        alice, bob = HttpAgent(a.port, "alice"), HttpAgent(b.port, "bob")
        cleanup.callback(alice.close)
        cleanup.callback(bob.close)
        claimed = alice.call("claim_task", {})
        seen_by_b = bob.call("get_task", {"task_id": claimed["id"]})
        assert seen_by_b["task"]["state"] == "claimed" and seen_by_b["task"]["assignee"] == "alice"
        refused = bob.request("tools/call", {"name": "complete_task", "arguments": {"task_id": claimed["id"]}})
        assert refused.get("isError"), refused
        alice.call("send_mail", {"to": ["bob"], "subject": "hello from host a", "body": "via server A"})
        inbox = bob.call("fetch_inbox", {"include_bodies": True})
        assert [m["subject"] for m in inbox["messages"]] == ["hello from host a"]
        alice.call("complete_task", {"task_id": claimed["id"], "summary": "first"})

        done: list[str] = [claimed["id"]]
        errors: list[str] = []
        threads = [
            threading.Thread(target=_agent_loop, args=((a if i % 2 else b).port, f"agent-{i:02d}", done, errors))
            for i in range(AGENTS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert errors == []
    twice = [task_id for task_id, n in Counter(done).items() if n > 1]
    assert twice == []
    assert set(done) == all_ids
    status = _run(project_b, env, "status", "--json")
    assert status["tasks"].get("done") == TASKS
