"""Crashes: an agent killed (-9) while holding a lease, and a server killed (-9) in the middle of writes."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import jetpack_command, subprocess_env
from e2e_helpers import HERE, RawServer, db_path, integrity_check, kill_process, open_db, server_env, write_config

pytestmark = pytest.mark.e2e

LEASE = "2"
# Lapsed leases come back at once (no retry wait: test_lifecycle covers it) and are swept often.
FAST_SWEEP = "[tasks]\nretry_backoff_seconds = 0\n\n[server]\nsweep_interval_seconds = 0.5\n"
WAIT = 60.0  # upper bound for anything to happen; never an expectation of speed


def _cli(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        jetpack_command(*args),
        check=False,
        env=subprocess_env(project, **env),
        cwd=project,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )


def _cli_json(project: Path, *args: str, **env: str) -> Any:
    done = _cli(project, *args, "--json", **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _add_tasks(project: Path, *titles: str) -> list[str]:
    ids = []
    for title in titles:
        ids.append(_cli_json(project, "task", "add", title, "--as", "planner")["created"][0]["id"])
    return ids


def _wait_for(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {WAIT}s waiting for {what}")
        time.sleep(0.1)


def _task_row(project: Path, task_id: str) -> dict[str, Any]:
    with open_db(db_path(project)) as conn:
        cursor = conn.execute("SELECT * FROM tasks WHERE id = ?", (task_id,))
        columns = [d[0] for d in cursor.description]
        return dict(zip(columns, cursor.fetchone(), strict=True))


def _read_line(proc: subprocess.Popen[bytes], timeout: float = WAIT) -> bytes:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"no output from pid {proc.pid} in {timeout}s")
    return proc.stdout.readline()


def _sigkill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _recover_and_finish(project: Path, task_id: str, crashed_agent: str) -> None:
    """With the holder dead, the sweeper of another live server returns the task; that agent finishes it."""
    with RawServer(project, JETPACK_AGENT="rescuer", JETPACK_LEASE_SECONDS=LEASE) as rescuer:
        rescuer.handshake()
        # No tool calls yet: only the server's background sweep can return the task to the queue.
        _wait_for(f"{task_id} to be ready again", lambda: _task_row(project, task_id)["state"] == "ready")
        shown = _cli_json(project, "task", "show", task_id)["task"]
        assert shown["state"] == "ready"
        assert shown["attempts"] == 1
        assert "assignee" not in shown
        with open_db(db_path(project)) as conn:
            expired = conn.execute(
                "SELECT actor, before_state, after_state, note FROM events "
                "WHERE task_id = ? AND kind = 'lease_expired'",
                (task_id,),
            ).fetchall()
        assert expired == [("system", "claimed", "ready", f"lease of {crashed_agent} expired")]

        claimed = rescuer.call_tool("claim_task", {"task_id": task_id})
        assert claimed.get("isError") is not True, claimed
        assert claimed["structuredContent"]["assignee"] == "rescuer"
        done = rescuer.call_tool("complete_task", {"task_id": task_id, "summary": "picked up after a crash"})
        assert done.get("isError") is not True, done
        assert done["structuredContent"]["state"] == "done"
    row = _task_row(project, task_id)
    assert (row["state"], row["assignee"], row["attempts"]) == ("done", "rescuer", 1)
    assert integrity_check(db_path(project)) == ["ok"]


def _pid_gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # exited, waiting to be reaped by init


@pytest.mark.parametrize(
    ("mode", "killed"),
    [("legacy", "client and server"), ("auto", "client and server"), ("legacy", "client only")],
)
def test_agent_process_killed_holding_a_lease(project: Path, mode: str, killed: str) -> None:
    """A separate client OS process and its `jetpack serve` child die (-9) right after a claim.

    When only the client is killed, its server sees stdin close and must exit by itself (no orphan
    servers); the claim is not handed back early, it lapses with its lease like any other.
    """
    write_config(project, FAST_SWEEP)
    task_id, other = _add_tasks(project, "Held when the agent dies", "Untouched")
    holder = subprocess.Popen(
        [sys.executable, str(HERE / "lease_holder.py"), "doomed-agent", mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=server_env(project, JETPACK_LEASE_SECONDS=LEASE),
        cwd=project,
    )
    server_pid = None
    try:
        report = json.loads(_read_line(holder))
        server_pid = report["server_pid"]
        assert report["task_id"] == task_id
        assert isinstance(server_pid, int)
        assert server_pid != holder.pid
        row = _task_row(project, task_id)
        assert (row["state"], row["assignee"]) == ("claimed", "doomed-agent")
        if killed == "client and server":
            _sigkill_pid(server_pid)
        kill_process(holder)
        _wait_for(f"the server (pid {server_pid}) to exit", lambda: _pid_gone(server_pid))
    finally:
        kill_process(holder)
        if server_pid is not None and not _pid_gone(server_pid):
            _sigkill_pid(server_pid)

    _recover_and_finish(project, task_id, "doomed-agent")
    assert _task_row(project, other)["state"] == "ready"


def test_server_killed_holding_a_lease_then_the_name_can_be_reused(project: Path) -> None:
    """The server process itself dies (-9) mid-session; the agent's name is not stuck afterwards."""
    write_config(project, FAST_SWEEP)
    (task_id,) = _add_tasks(project, "Held when the server dies")
    with RawServer(project, JETPACK_AGENT="doomed-server", JETPACK_LEASE_SECONDS=LEASE) as doomed:
        doomed.handshake()
        claimed = doomed.call_tool("claim_task", {})
        assert claimed["structuredContent"]["id"] == task_id
        doomed.kill()
    _recover_and_finish(project, task_id, "doomed-server")

    # The dead session's process is gone, so the same name is free at once (no stale wait).
    with RawServer(project, JETPACK_AGENT="doomed-server") as again:
        again.handshake()
        registered = again.call_tool("register_agent", {"name": "doomed-server"})
        assert registered.get("isError") is not True, registered
        assert registered["structuredContent"]["live"] is True


# --- kill -9 in the middle of writes -------------------------------------------------------------------


def _pipeline(server: RawServer, requests: list[tuple[str, dict[str, Any]]]) -> dict[int, tuple[str, dict[str, Any]]]:
    """Send every request from a background thread (the pipe fills up), return {request id: request}."""
    sent: dict[int, tuple[str, dict[str, Any]]] = {}
    ids = list(range(1_000, 1_000 + len(requests)))
    for request_id, request in zip(ids, requests, strict=True):
        sent[request_id] = request

    def write_all() -> None:
        for request_id, (name, arguments) in zip(ids, requests, strict=True):
            message = {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": "tools/call",
                "params": {"name": name, "arguments": arguments},
            }
            try:
                server.send(message)
            except (BrokenPipeError, OSError, ValueError):
                return

    threading.Thread(target=write_all, daemon=True).start()
    return sent


def _collect_until_kill(server: RawServer, kill_after: int) -> list[dict[str, Any]]:
    """Read responses; SIGKILL the server right after the kill_after-th one (it is still busy writing)."""
    responses = []
    while len(responses) < kill_after:
        message = server.receive()
        assert message is not None, f"server exited early:\n{server.stderr}"
        if "id" in message and "method" not in message:
            responses.append(message)
    server.kill()
    # Anything already on the wire before the kill is acknowledged too.
    while (message := server.receive(timeout=5)) is not None:
        if "id" in message and "method" not in message:
            responses.append(message)
    return responses


BATCHES = 300


# Different kill points; big batches make it likely that the kill lands inside a write transaction.
@pytest.mark.parametrize(("kill_after", "per_batch"), [(1, 250), (25, 40), (170, 4)])
def test_server_killed_mid_create_keeps_every_acknowledged_write(
    project: Path, kill_after: int, per_batch: int
) -> None:
    requests = [
        ("create_tasks", {"tasks": [{"title": f"batch {b} item {i}", "labels": [f"b{b}"]} for i in range(per_batch)]})
        for b in range(BATCHES)
    ]
    with RawServer(project, JETPACK_AGENT="writer") as server:
        server.handshake()
        sent = _pipeline(server, requests)
        responses = _collect_until_kill(server, kill_after)
    assert server.proc.returncode == -signal.SIGKILL

    acknowledged: dict[str, int] = {}
    for response in responses:
        result = response.get("result", {})
        assert result.get("isError") is not True, response
        batch = int(sent[response["id"]][1]["tasks"][0]["title"].split()[1])
        created = result["structuredContent"]["created"]
        assert len(created) == per_batch
        for item in created:
            acknowledged[item["id"]] = batch
    assert len(acknowledged) >= kill_after * per_batch

    database = db_path(project)
    assert integrity_check(database) == ["ok"]
    with open_db(database) as conn:
        stored = dict(conn.execute("SELECT id, title FROM tasks").fetchall())
        created_events = Counter(
            task_id for (task_id,) in conn.execute("SELECT task_id FROM events WHERE kind = 'created'")
        )
    missing = sorted(set(acknowledged) - set(stored))
    assert missing == [], f"acknowledged but lost: {missing[:10]}"
    for task_id, batch in acknowledged.items():
        assert stored[task_id].startswith(f"batch {batch} ")
    # Each call is atomic: a batch is stored whole or not at all, never half.
    stored_per_batch = Counter(int(title.split()[1]) for title in stored.values())
    assert set(stored_per_batch.values()) <= {per_batch}, {b: n for b, n in stored_per_batch.items() if n != per_batch}
    assert set(created_events) == set(stored)
    assert set(created_events.values()) <= {1}

    # The project is usable after the crash: a new server writes, the CLI reads the same counts.
    with RawServer(project, JETPACK_AGENT="after-crash") as server:
        server.handshake()
        more = server.call_tool("create_tasks", {"tasks": [{"title": "after the crash"}]})
        assert more.get("isError") is not True, more
        assert server.close_stdin_and_wait() == 0, server.stderr
    status = _cli_json(project, "status")
    assert status["total"] == len(stored) + 1
    assert status["tasks"]["ready"] == len(stored) + 1


@pytest.mark.parametrize("kill_after", [3, 120])
def test_server_killed_mid_claims_and_completions(project: Path, kill_after: int) -> None:
    plan = project / "plan.json"
    plan.write_text(json.dumps([{"title": f"claimable {n}"} for n in range(150)]))
    created = _cli_json(project, "task", "add", "--from-file", str(plan))["created"]
    task_ids = [c["id"] for c in created]
    requests: list[tuple[str, dict[str, Any]]] = []
    for task_id in task_ids:
        requests.append(("claim_task", {"task_id": task_id}))
        requests.append(("complete_task", {"task_id": task_id, "summary": "ok"}))
    with RawServer(project, JETPACK_AGENT="worker") as server:
        server.handshake()
        sent = _pipeline(server, requests)
        responses = _collect_until_kill(server, kill_after)

    claimed_ok, completed_ok = set(), set()
    for response in responses:
        result = response.get("result", {})
        if result.get("isError"):
            continue  # e.g. a completion processed before its claim; acknowledged nothing
        name, arguments = sent[response["id"]]
        (claimed_ok if name == "claim_task" else completed_ok).add(arguments["task_id"])
    assert claimed_ok, "no claim was acknowledged before the kill"

    database = db_path(project)
    assert integrity_check(database) == ["ok"]
    with open_db(database) as conn:
        rows = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, state, assignee FROM tasks")}
        completions = Counter(
            task_id for (task_id,) in conn.execute("SELECT task_id FROM events WHERE kind = 'completed'")
        )
    assert set(rows) == set(task_ids)
    for task_id in completed_ok:
        assert rows[task_id] == ("done", "worker"), task_id
    for task_id in claimed_ok:
        assert rows[task_id] in {("claimed", "worker"), ("done", "worker")}, task_id
    states = defaultdict(set)
    for task_id, (state, _) in rows.items():
        states[state].add(task_id)
    assert set(states) <= {"ready", "claimed", "done"}
    assert states["done"] == set(completions), "a done task without its completed event, or the reverse"
    assert set(completions.values()) <= {1}
