"""Agent health across real processes: a killed `jetpack serve` is declared dead and its work recovered
by another server's sweeper; a silent holder's task stalls and is recovered, a beating holder's
long task is only reported."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import jetpack_command, subprocess_env
from e2e_helpers import RawServer, db_path, integrity_check, open_db, write_config

pytestmark = pytest.mark.e2e

# Short thresholds so the test takes seconds; leases stay long, so only recovery can return the work.
CONFIG = """\
[tasks]
retry_backoff_seconds = 1

[agents]
stale_seconds = 5
exit_grace_seconds = 1
stalled_seconds = 4
budget_min_seconds = 1
budget_default_seconds = 1

[server]
sweep_interval_seconds = 0.3
"""
WAIT = 60.0  # upper bound for anything to happen; never an expectation of speed


def _cli_json(project: Path, *args: str) -> Any:
    done = subprocess.run(
        jetpack_command(*args, "--json"),
        check=False,
        env=subprocess_env(project),
        cwd=project,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _add(project: Path, title: str) -> str:
    return str(_cli_json(project, "task", "add", title, "--as", "planner")["created"][0]["id"])


def _rows(project: Path, sql: str, *params: object) -> list[dict[str, Any]]:
    with open_db(db_path(project)) as conn:
        cursor = conn.execute(sql, params)
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def _task(project: Path, task_id: str) -> dict[str, Any]:
    return _rows(project, "SELECT * FROM tasks WHERE id = ?", task_id)[0]


def _wait_for(what: str, check: Callable[[], Any], while_waiting: Callable[[], None] = lambda: None) -> Any:
    deadline = time.monotonic() + WAIT
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {WAIT}s waiting for {what}")
        while_waiting()
        time.sleep(0.1)
    return value


def _ok(server: RawServer, tool: str, **arguments: Any) -> dict[str, Any]:
    result = server.call_tool(tool, arguments)
    assert result.get("isError") is not True, result
    return result["structuredContent"]  # type: ignore[no-any-return]


def test_a_killed_server_is_declared_dead_and_another_server_recovers_its_task(project: Path) -> None:
    write_config(project, CONFIG)
    task_id = _add(project, "Write the parser")
    with RawServer(project, JETPACK_AGENT="doomed") as doomed:
        doomed.handshake()
        assert _ok(doomed, "claim_task")["id"] == task_id
        _ok(doomed, "reserve_files", paths=["src/parser.py"], task_id=task_id)
        doomed_pid = doomed.proc.pid
        doomed.kill()

    with RawServer(project, JETPACK_AGENT="rescuer") as rescuer:
        rescuer.handshake()
        # No tool call: only the rescuer's background sweep can notice that doomed is dead.
        [recovered] = _wait_for(
            "the task to be recovered",
            lambda: _rows(project, "SELECT * FROM events WHERE task_id = ? AND kind = 'recovered'", task_id),
        )
        assert recovered["actor"] == "system" and recovered["before_state"] == "claimed"
        assert f"doomed is dead: its process {doomed_pid} on" in recovered["note"]
        assert "attempt 1 of 3 counted" in recovered["note"]
        [handoff] = _rows(project, "SELECT * FROM messages WHERE thread_id = ?", task_id)
        assert (handoff["kind"], handoff["sender"], handoff["task_id"]) == ("handoff", "system", task_id)
        assert json.loads(handoff["addressed_to"]) == ["doomed", "planner"]
        assert _rows(project, "SELECT released_at FROM reservations WHERE agent = 'doomed'")[0]["released_at"]
        assert len(_rows(project, "SELECT * FROM events WHERE kind = 'agent_dead'")) == 1

        # After its one-second retry wait the task is ready again, and the rescuer finishes it.
        _wait_for("the retry wait to end", lambda: _task(project, task_id)["state"] == "ready")
        assert _ok(rescuer, "claim_task", task_id=task_id)["attempts"] == 1
        assert _ok(rescuer, "complete_task", task_id=task_id, summary="picked up after a crash")["state"] == "done"
        detail = _ok(rescuer, "get_task", task_id=task_id)
        assert [e["kind"] for e in detail["errors"]] == ["recovered"]

    agents = {a["name"]: a for a in _cli_json(project, "agents")}
    assert agents["doomed"]["state"] == "dead" and "is gone" in agents["doomed"]["reason"]
    assert integrity_check(db_path(project)) == ["ok"]


def test_a_silent_holders_task_stalls_and_is_recovered_while_a_beating_holders_long_task_is_kept(
    project: Path,
) -> None:
    write_config(project, CONFIG)
    silent_task, long_task = _add(project, "Silent work"), _add(project, "Long work")
    with RawServer(project, JETPACK_AGENT="silent") as silent, RawServer(project, JETPACK_AGENT="busy") as busy:
        silent.handshake()
        busy.handshake()
        _ok(silent, "claim_task", task_id=silent_task)
        _ok(busy, "claim_task", task_id=long_task)
        _ok(busy, "update_task", task_id=long_task, status="in_progress", note="a long migration")

        def keep_beating() -> None:
            _ok(busy, "list_tasks")  # any call of a session is a heartbeat (and renews its leases)

        # Every server's sweeper recovers: silent's own server too, although its process lives on.
        [stalled] = _wait_for(
            "the silent holder's task to stall",
            lambda: _rows(project, "SELECT * FROM events WHERE task_id = ? AND kind = 'recovered'", silent_task),
            keep_beating,
        )
        assert "no progress on it and no heartbeat from silent" in stalled["note"]
        _wait_for(
            "the long task to be reported",
            lambda: _rows(project, "SELECT * FROM events WHERE task_id = ? AND kind = 'long_running'", long_task),
            keep_beating,
        )
        deadline = time.monotonic() + 6  # past the stall threshold again: beating keeps the task
        while time.monotonic() < deadline:
            keep_beating()
            time.sleep(0.3)
        long_row = _task(project, long_task)
        assert (long_row["state"], long_row["assignee"], long_row["attempts"]) == ("in_progress", "busy", 0)
        reports = _rows(project, "SELECT * FROM events WHERE task_id = ? AND kind = 'long_running'", long_task)
        assert len(reports) == 1  # once per claim, however many servers sweep

        late = silent.call_tool("complete_task", {"task_id": silent_task, "summary": "too late"})
        assert late.get("isError") is True
        assert _ok(busy, "complete_task", task_id=long_task, summary="migrated")["state"] == "done"
    assert integrity_check(db_path(project)) == ["ok"]
