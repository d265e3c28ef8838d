"""The dashboard's HTTP API and live feed, against a real `jetpack serve --http` (and `jetpack
dashboard`) subprocess: moves through the service rules, the WebSocket resume, the token rules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest
from conftest import jetpack_command
from e2e_helpers import kill_process, server_env
from e2e_http import (  # project, server: the fixtures
    HttpServer,
    add_task,
    create_token,
    free_port,
    initialised_project,  # noqa: F401
    loopback_server,  # noqa: F401
    run_cli,
)
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

pytestmark = pytest.mark.e2e

TIMEOUT = 30.0  # only against hangs


def api(server: HttpServer, path: str, token: str | None = None) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx2.get(f"{server.url}{path}", headers=headers, timeout=TIMEOUT)


def post(server: HttpServer, path: str, body: dict[str, Any], **headers: str) -> httpx2.Response:
    return httpx2.post(f"{server.url}{path}", json=body, headers=headers, timeout=TIMEOUT)


def move(server: HttpServer, task_id: str, to: str, reason: str | None = None, **headers: str) -> httpx2.Response:
    return post(server, f"/api/tasks/{task_id}/move", {"to": to, "reason": reason}, **headers)


def state_of(project: Path, task_id: str) -> str:
    return str(json.loads(run_cli(project, "task", "show", task_id, "--json"))["task"]["state"])


def db_events(project: Path, after: int) -> list[dict[str, Any]]:
    import sqlean

    with sqlean.connect(str(project / ".jetpack" / "jetpack.db")) as db:
        db.row_factory = sqlean.Row
        rows = db.execute("SELECT id, kind, task_id, actor FROM events WHERE id > ? ORDER BY id", (after,)).fetchall()
        return [dict(r) for r in rows]


def ws_connect(server: HttpServer, cursor: int | None, token: str | None = None) -> ClientConnection:
    socket = connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=TIMEOUT)
    socket.send(json.dumps({"type": "hello", "cursor": cursor, "token": token}))
    return socket


def receive_events(socket: ClientConnection, count: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while len(events) < count:
        message = json.loads(socket.recv(timeout=TIMEOUT))
        if message["type"] == "events":
            events.extend(message["events"])
    return events


def nothing_more(socket: ClientConnection, seconds: float = 0.6) -> bool:
    try:
        socket.recv(timeout=seconds)
    except TimeoutError:
        return True
    return False


# -- the board's moves ---------------------------------------------------------------------------


def test_a_board_move_is_a_real_transition_recorded_as_an_event(project: Path, server: HttpServer) -> None:
    task = add_task(project, "Write the parser")
    answer = move(server, task, "blocked", "waits for the grammar")
    assert answer.status_code == 200, answer.text
    assert answer.json()["card"]["state"] == "blocked"
    assert state_of(project, task) == "blocked"
    blocked = [e for e in db_events(project, 0) if e["task_id"] == task and e["kind"] == "blocked"]
    assert len(blocked) == 1 and blocked[0]["actor"].startswith("web-")

    assert move(server, task, "ready").json()["card"]["state"] == "ready"  # unblock
    assert move(server, task, "cancelled", "not needed").json()["card"]["state"] == "cancelled"
    assert move(server, task, "ready").json()["card"]["state"] == "ready"  # reopen


def test_refused_moves_say_why_and_change_nothing(project: Path, server: HttpServer) -> None:
    task = add_task(project, "Fix the login bug")
    run_cli(project, "task", "claim", task, "--as", "bob")
    before = len(db_events(project, 0))

    refused = move(server, task, "blocked", "I want it blocked")
    assert refused.status_code == 403
    assert "claimed by bob" in refused.json()["message"]
    no_reason = move(server, task, "cancelled")
    assert no_reason.status_code == 400 and "needs a reason" in no_reason.json()["message"]
    done = move(server, task, "done")
    assert done.status_code == 403 and "complete_task" in done.json()["message"]
    unknown = move(server, task, "finished")
    assert unknown.status_code == 400 and "must be one of" in unknown.json()["message"]
    missing = move(server, "jp-zzzz", "blocked", "x")
    assert missing.status_code == 404
    assert state_of(project, task) == "claimed"
    assert len(db_events(project, 0)) == before

    released = move(server, task, "ready")  # releasing a claim: an operator move, confirmed on the page
    assert released.status_code == 200 and released.json()["card"]["state"] == "ready"
    assert released.json()["card"]["assignee"] is None


def test_writes_from_another_site_and_without_json_are_refused(project: Path, server: HttpServer) -> None:
    task = add_task(project, "Keep me ready")
    cross_site = move(server, task, "blocked", "csrf", Origin="http://evil.example")
    assert cross_site.status_code == 403 and "another site" in cross_site.json()["message"]
    form = httpx2.post(f"{server.url}/api/tasks/{task}/move", data={"to": "blocked"}, timeout=TIMEOUT)
    assert form.status_code == 400 and "application/json" in form.json()["message"]
    assert state_of(project, task) == "ready"


def test_read_models_answer_for_every_view(project: Path, server: HttpServer) -> None:
    epic = add_task(project, "Epic")
    child = add_task(project, "Child", "--parent", epic)
    board = api(server, "/api/board").json()
    assert [c["id"] for c in board["cards"]] == [child]  # leaves only
    tree = api(server, "/api/tree").json()
    assert tree["roots"][0]["id"] == epic and tree["roots"][0]["children"][0]["id"] == child
    assert api(server, f"/api/tasks/{child}").json()["task"]["id"] == child
    graph = api(server, "/api/graph").json()
    assert {n["id"] for n in graph["nodes"]} >= {child} and graph["critical_path"] == [child]
    for path in (
        "/api/overview",
        "/api/agents",
        "/api/leaderboard",
        "/api/events?after=0",
        "/api/mail/threads",
        "/api/reservations",
        "/api/quality",
        "/api/metrics?hours=24",
        "/api/memory/search?q=parser",
    ):
        assert api(server, path).status_code == 200, path
    bad = api(server, "/api/metrics?hours=0")
    assert bad.status_code == 400 and "hours" in bad.json()["message"]
    assert api(server, "/api/nope").status_code == 404


def test_a_person_sends_mail_and_releases_a_reservation(project: Path, server: HttpServer) -> None:
    run_cli(project, "reserve", "src/api/**", "--as", "alice", "--reason", "refactor")
    reservations = api(server, "/api/reservations").json()["reservations"]
    assert [(r["agent"], r["pattern"], r["mode"]) for r in reservations] == [("alice", "src/api/**", "advisory")]
    released = post(server, f"/api/reservations/{reservations[0]['id']}/release", {})
    assert released.json()["released"] == 1
    assert api(server, "/api/reservations").json()["reservations"] == []

    sent = post(server, "/api/mail/send", {"to": ["alice"], "subject": "Please rebase", "body": "main moved"})
    assert sent.status_code == 200, sent.text
    threads = api(server, "/api/mail/threads").json()["threads"]
    assert threads[0]["subject"] == "Please rebase"
    inbox = api(server, "/api/mail/inbox/alice").json()["messages"]
    assert inbox[0]["subject"] == "Please rebase" and inbox[0]["sender_kind"] == "human"
    bad = post(server, "/api/mail/send", {"to": ["alice"]})
    assert bad.status_code == 400


# -- live ------------------------------------------------------------------------------------------


def test_a_reconnecting_client_gets_exactly_the_events_it_missed_in_order(project: Path, server: HttpServer) -> None:
    add_task(project, "first")  # makes 'planner' known, so the batch below adds task events only
    socket = ws_connect(server, None)
    welcome = json.loads(socket.recv(timeout=TIMEOUT))
    assert welcome["type"] == "welcome"
    add_task(project, "seen live")
    [seen] = receive_events(socket, 1)
    cursor = seen["id"]
    socket.close()

    batch = [{"title": f"missed {i}"} for i in range(100)]
    plan = project / "plan.json"
    plan.write_text(json.dumps(batch))
    run_cli(project, "task", "add", "--from-file", str(plan), "--as", "planner")
    missed = db_events(project, cursor)
    assert len(missed) == 100

    socket = ws_connect(server, cursor)
    assert json.loads(socket.recv(timeout=TIMEOUT)) == {"type": "welcome", "cursor": cursor}
    replayed = receive_events(socket, 100)
    assert [e["id"] for e in replayed] == [e["id"] for e in missed]
    assert [e["kind"] for e in replayed] == ["created"] * 100
    assert nothing_more(socket)  # nothing twice
    add_task(project, "after the resume")
    [live] = receive_events(socket, 1)
    assert live["id"] == missed[-1]["id"] + 1
    socket.close()


def test_mail_reservations_and_agents_reach_the_feed(project: Path, server: HttpServer) -> None:
    socket = ws_connect(server, None)
    json.loads(socket.recv(timeout=TIMEOUT))
    run_cli(project, "mail", "send", "--to", "*", "--subject", "hello", "--as", "carol")
    run_cli(project, "reserve", "docs/**", "--as", "carol")
    kinds = [e["kind"] for e in receive_events(socket, 3)]
    assert kinds == ["mail_sent", "agent_joined", "files_reserved"]  # the CLI makes a name known after success
    socket.close()


def test_bad_hellos_are_answered_with_a_reason(server: HttpServer) -> None:
    socket = connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=TIMEOUT)
    socket.send(json.dumps({"type": "hello", "cursor": -3}))
    with pytest.raises(ConnectionClosed) as closed:
        socket.recv(timeout=TIMEOUT)
    assert closed.value.rcvd is not None and "cursor" in closed.value.rcvd.reason


# -- beyond loopback -----------------------------------------------------------------------------


def test_beyond_loopback_reads_and_writes_need_a_token_but_the_page_loads(project: Path) -> None:
    task = add_task(project, "Guarded")
    with HttpServer(project, host="0.0.0.0") as server:
        assert api(server, "/").status_code == 200  # the page holds no data; it asks for a token
        assert api(server, "/static/app.js").status_code == 200
        assert api(server, "/api/board").status_code == 401
        refused = move(server, task, "blocked", "no token")
        assert refused.status_code == 401 and "token" in refused.json()["message"]
        assert state_of(project, task) == "ready"

        socket = ws_connect(server, None)
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401

        token = create_token(project, agent="dana")
        assert api(server, "/api/board", token).status_code == 200
        allowed = httpx2.post(
            f"{server.url}/api/tasks/{task}/move",
            json={"to": "blocked", "reason": "with a token"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=TIMEOUT,
        )
        assert allowed.status_code == 200, allowed.text
        assert [e["actor"] for e in db_events(project, 0) if e["kind"] == "blocked"] == ["dana"]
        socket = ws_connect(server, None, token=token)
        assert json.loads(socket.recv(timeout=TIMEOUT))["type"] == "welcome"
        socket.close()


def test_the_dashboard_alone_serves_the_page_and_no_mcp_endpoint(project: Path) -> None:
    port = free_port()
    log = (project / "dashboard.log").open("wb")
    proc = subprocess.Popen(
        [*jetpack_command("dashboard", "--port", str(port))],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=server_env(project, JETPACK_EMBEDDER="hash"),
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx2.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert proc.poll() is None, (project / "dashboard.log").read_text()
            __import__("time").sleep(0.05)
        assert "Jetpack" in httpx2.get(base + "/", timeout=TIMEOUT).text
        assert httpx2.get(base + "/api/board", timeout=TIMEOUT).json()["cards"] == []
        assert httpx2.post(base + "/mcp", json={}, timeout=TIMEOUT).status_code in (404, 405)
    finally:
        kill_process(proc)
        log.close()


def test_dashboard_help_teaches() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jetpack", "dashboard", "--help"], capture_output=True, text=True, check=True
    )
    assert "jetpack dashboard --port" in done.stdout and "token" in done.stdout
