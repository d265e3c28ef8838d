"""`jetpack serve --http`: real uvicorn servers in subprocesses, the SDK's real Streamable HTTP and
SSE clients, tokens made by the real CLI, the real database file.

Covers the transports (the work loop end to end over both), /healthz, the token rules (required
beyond loopback, bound to one agent, revocable), the body and rate limits, that no token ever
shows up in a tool result, an event row or the server's log, and a graceful SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from e2e_helpers import RESPONSE_TIMEOUT, db_path, open_db
from e2e_http import HttpServer, auth_header, connect, create_token, init_project, run_cli
from mcp import Client, MCPDeprecationWarning
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def add_tasks(project: Path, *titles: str) -> list[str]:
    plan = project / "plan.json"
    plan.write_text(json.dumps([{"title": t} for t in titles]))
    created = json.loads(run_cli(project, "task", "add", "--from-file", str(plan), "--json", "--as", "planner"))
    return [c["id"] for c in created["created"]]


def post_initialize(server: HttpServer, token: str | None = None, **headers: str) -> httpx2.Response:
    return httpx2.post(
        server.mcp_url,
        json=INITIALIZE,
        headers={**MCP_HEADERS, **auth_header(token), **headers},
        timeout=RESPONSE_TIMEOUT,
    )


class Results:
    """Every tool result of a test, to search for secrets afterwards."""

    def __init__(self) -> None:
        self.seen: list[CallToolResult] = []

    async def call(self, client: Client, tool: str, arguments: dict[str, Any] | None = None) -> CallToolResult:
        result = await client.call_tool(tool, arguments or {})
        self.seen.append(result)
        return result

    def text(self) -> str:
        return "\n".join(r.model_dump_json() for r in self.seen)


def text_of(result: CallToolResult) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


async def test_clients_over_streamable_http_and_sse_run_the_work_loop(project: Path) -> None:
    init_project(project)
    first, second, third = add_tasks(project, "Over Streamable HTTP", "Over SSE", "Over the 2026 protocol")
    calls = Results()
    with HttpServer(project) as server:
        done: dict[str, str] = {}
        for transport, mode in (("http", "legacy"), ("sse", "legacy"), ("http", "auto")):
            async with connect(server, transport, mode=mode) as client:  # type: ignore[arg-type]
                claimed = await calls.call(client, "claim_task")
                task_id = claimed.structured_content["id"]  # type: ignore[index]
                completed = await calls.call(client, "complete_task", {"task_id": task_id, "summary": "done"})
                assert not completed.is_error, text_of(completed)
                done[task_id] = completed.structured_content["assignee"]  # type: ignore[index]
        health = server.health()
    assert sorted(done) == sorted([first, second, third])
    assert len(set(done.values())) == 3  # each MCP session was its own agent
    with open_db(db_path(project)) as db:
        states = dict(db.execute("SELECT id, state FROM tasks").fetchall())
    assert set(states.values()) == {"done"}
    assert health["ok"] is True and health["datalayer"]["reachable"] is True


async def test_a_session_subscribed_to_its_inbox_is_pushed_new_mail(project: Path) -> None:
    init_project(project)
    updates: list[str] = []

    async def on_message(message: Any) -> None:
        uri = getattr(getattr(message, "params", None), "uri", None)
        if uri:
            updates.append(str(uri))

    with HttpServer(project) as server:
        async with (
            connect(server, "http", message_handler=on_message) as bob,
            connect(server, "sse") as alice,
        ):
            await bob.call_tool("register_agent", {"name": "bob"})
            with pytest.warns(MCPDeprecationWarning):  # today's clients still subscribe this way
                await bob.subscribe_resource("jetpack://inbox/bob")
            await alice.call_tool("send_mail", {"to": ["bob"], "subject": "ping", "body": "over HTTP"})
            with anyio.fail_after(RESPONSE_TIMEOUT):
                while not updates:
                    await anyio.sleep(0.05)
    assert updates == ["jetpack://inbox/bob"]


async def test_healthz_reports_the_datalayer_schema_and_uptime(project: Path) -> None:
    init_project(project)
    with HttpServer(project) as server:
        health = server.health()
    latest = max(int(p.name[:4]) for p in (Path(__file__).parents[2] / "jetpack/store/migrations").glob("*.sql"))
    assert health["schema_version"] >= 7 and health["schema_version"] <= latest
    datalayer = health["datalayer"]
    assert datalayer["kind"] == "sqlite" and datalayer["location"] == str(db_path(project))
    assert datalayer["reachable"] is True and datalayer["full_text_search"] == "fts5"
    assert health["uptime_seconds"] >= 0 and health["calls_in_flight"] == 0


async def test_beyond_loopback_a_request_without_token_gets_401_with_a_clear_body(project: Path) -> None:
    init_project(project)
    token = create_token(project)
    with HttpServer(project, host="0.0.0.0") as server:
        missing = post_initialize(server)
        wrong_scheme = post_initialize(server, Authorization="Basic dXNlcjpwYXNz")
        sse = httpx2.get(server.sse_url, timeout=RESPONSE_TIMEOUT)
        messages = httpx2.post(f"{server.url}/messages/?session_id=0", json={}, timeout=RESPONSE_TIMEOUT)
        health_anonymous = server.health()
        health_with_token = server.health(token)
        async with connect(server, "http", token=token) as client:
            tools = await client.list_tools()

    for refused in (missing, wrong_scheme, sse, messages):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        body = refused.json()
        assert body["error"] == "unauthorized"
        assert "jetpack token create --agent NAME" in body["message"]
    assert "listens on 0.0.0.0, beyond loopback" in missing.json()["message"]
    assert "must be 'Bearer <token>'" in wrong_scheme.json()["message"]
    assert "location" not in health_anonymous["datalayer"]  # health checks need no token, but see less
    assert health_with_token["datalayer"]["location"] == str(db_path(project))
    assert "claim_task" in {t.name for t in tools.tools}


async def test_on_loopback_a_token_is_optional_unless_the_request_came_through_a_proxy(project: Path) -> None:
    init_project(project)
    with HttpServer(project) as server:
        direct = post_initialize(server)
        proxied = post_initialize(server, **{"X-Forwarded-For": "203.0.113.7"})
    assert direct.status_code == 200
    assert proxied.status_code == 401
    assert "came through a proxy (it carries x-forwarded-for)" in proxied.json()["message"]


async def test_a_token_bound_to_an_agent_cannot_act_as_or_on_behalf_of_its_peer(project: Path) -> None:
    init_project(project)
    [task_id] = add_tasks(project, "Alice's task")
    alice_token = create_token(project, agent="alice")
    bob_token = create_token(project, agent="bob")
    calls = Results()
    with HttpServer(project, host="0.0.0.0") as server:
        async with (
            connect(server, "sse", token=alice_token) as alice,
            connect(server, "http", token=bob_token) as bob,
        ):
            claimed = await calls.call(alice, "claim_task")
            assert claimed.structured_content["assignee"] == "alice"  # type: ignore[index]

            as_alice = await calls.call(bob, "register_agent", {"name": "alice"})
            complete = await calls.call(bob, "complete_task", {"task_id": task_id, "summary": "mine now"})
            release = await calls.call(bob, "fail_task", {"task_id": task_id, "reason": "x", "mode": "release"})
            whoami = await calls.call(bob, "register_agent", {"skills": ["python"]})

            completed = await calls.call(alice, "complete_task", {"task_id": task_id, "summary": "done"})

    assert as_alice.is_error and "bound to agent 'bob', so it cannot act as 'alice'" in text_of(as_alice)
    assert complete.is_error and f"{task_id} is claimed by alice" in text_of(complete)
    assert release.is_error and "only alice can fail or release it" in text_of(release)
    assert not whoami.is_error and whoami.structured_content["name"] == "bob"  # type: ignore[index]
    assert not completed.is_error and completed.structured_content["state"] == "done"  # type: ignore[index]


async def test_a_revoked_token_is_refused_from_its_next_request(project: Path) -> None:
    init_project(project)
    token = create_token(project, agent="carol")
    with HttpServer(project, host="0.0.0.0") as server:
        async with connect(server, "http", token=token) as client:
            before = await client.call_tool("list_tasks", {})
            run_cli(project, "token", "revoke", token[:12])
            with pytest.raises(MCPError):  # how the SDK client reports the HTTP 401
                await client.call_tool("list_tasks", {})
        new_connection = post_initialize(server, token)
    assert not before.is_error
    assert new_connection.status_code == 401
    assert "unknown or has been revoked" in new_connection.json()["message"]


async def test_an_oversized_request_gets_413_whether_declared_or_streamed(project: Path) -> None:
    init_project(project, max_body_bytes=2048)
    oversized = json.dumps({**INITIALIZE, "padding": "x" * 4096}).encode()

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server has to count
        for start in range(0, len(oversized), 512):
            yield oversized[start : start + 512]

    with HttpServer(project) as server:
        declared = httpx2.post(server.mcp_url, content=oversized, headers=MCP_HEADERS, timeout=RESPONSE_TIMEOUT)
        streamed = httpx2.post(server.mcp_url, content=chunks(), headers=MCP_HEADERS, timeout=RESPONSE_TIMEOUT)
        fits = post_initialize(server)
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["error"] == "request_too_large"
        assert "at most 2048 bytes" in response.json()["message"]
    assert "transfer-encoding" in streamed.request.headers
    assert fits.status_code == 200


async def test_a_burst_past_the_rate_limit_gets_429_with_retry_after(project: Path) -> None:
    init_project(project, rate_limit_per_second=0.01, rate_limit_burst=3)  # ~no refill during the test
    with HttpServer(project) as server:
        responses = [httpx2.get(f"{server.url}/healthz", timeout=RESPONSE_TIMEOUT) for _ in range(5)]
    limited = [r for r in responses if r.status_code == 429]
    assert limited and all(r.status_code in (200, 429) for r in responses)
    assert int(limited[0].headers["retry-after"]) >= 1
    body = limited[0].json()
    assert body["error"] == "rate_limited" and body["retry_after_seconds"] >= 1
    assert "0.01 requests a second per token" in body["message"]


async def test_tokens_never_show_up_in_tool_results_events_or_logs(project: Path) -> None:
    init_project(project)
    add_tasks(project, "One", "Two")
    secrets = [create_token(project, agent="dana"), create_token(project, agent="erin"), create_token(project)]
    calls = Results()
    with HttpServer(project, "--log-level", "debug", host="0.0.0.0") as server:
        for secret, transport in zip(secrets, ("http", "sse", "http"), strict=True):
            async with connect(server, transport, token=secret) as client:  # type: ignore[arg-type]
                await calls.call(client, "register_agent", {"skills": ["python"]})
                claimed = await calls.call(client, "claim_task")
                if claimed.structured_content and claimed.structured_content.get("id"):
                    task_id = claimed.structured_content["id"]
                    await calls.call(client, "complete_task", {"task_id": task_id, "summary": "done"})
                await calls.call(client, "send_mail", {"to": ["dana"], "subject": "hi", "body": "hello"})
                await calls.call(client, "fetch_inbox")
                await calls.call(client, "register_agent", {"name": "someone-else"})  # refused for bound ones
        post_initialize(server, secrets[0][:-1] + "x")  # a wrong token is refused without logging it
        run_cli(project, "token", "revoke", secrets[0][:12])
        post_initialize(server, secrets[0])
        assert server.stop() == 0
    with open_db(db_path(project)) as db:
        events = json.dumps(db.execute("SELECT * FROM events").fetchall())
    log = server.log
    assert "POST /mcp" in log and "401" in log  # the log is the debug-level one, with the refusals in it
    for secret in secrets:
        for place, text in (("tool results", calls.text()), ("events", events), ("server log", log)):
            assert secret not in text, f"a token appeared in the {place}"
            assert secret[12:] not in text, f"the secret part of a token appeared in the {place}"


async def test_sigterm_lets_the_call_in_flight_finish_then_exits_0(project: Path) -> None:
    init_project(project)
    [task_id] = add_tasks(project, "Claimed while the server stops")
    with HttpServer(project, "--log-level", "info") as server:
        async with connect(server, "http") as client:
            await client.call_tool("register_agent", {"name": "last-worker"})
            outcome: dict[str, CallToolResult] = {}

            async def claim() -> None:
                outcome["claim"] = await client.call_tool("claim_task", {})

            with writer_holding_the_database(project) as release:
                async with anyio.create_task_group() as group:
                    group.start_soon(claim)
                    await until(lambda: server.health()["calls_in_flight"] == 1)
                    server.proc.send_signal(signal.SIGTERM)
                    await until(lambda: "shutting down: 1 call(s) in flight" in server.log)
                    release()  # the claim can write now, while the server is stopping
        status = server.proc.wait(timeout=RESPONSE_TIMEOUT)
    assert status == 0, server.log
    claimed = outcome["claim"]
    assert not claimed.is_error and claimed.structured_content["id"] == task_id  # type: ignore[index]
    with open_db(db_path(project)) as db:
        state, assignee = db.execute("SELECT state, assignee FROM tasks WHERE id = ?", (task_id,)).fetchone()
        (ended_at,) = db.execute("SELECT ended_at FROM agents WHERE name = 'last-worker'").fetchone()
    assert (state, assignee) == ("claimed", "last-worker")
    assert ended_at is not None  # the session recorded its end before the DataLayer closed


@contextlib.contextmanager
def writer_holding_the_database(project: Path) -> Iterator[Any]:
    """Another process's write transaction holds the database until ``release()`` is called."""
    import sqlean

    conn = sqlean.connect(str(db_path(project)), isolation_level=None, timeout=30)
    conn.execute("BEGIN IMMEDIATE")
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            conn.execute("COMMIT")
            released = True

    try:
        yield release
    finally:
        release()
        conn.close()


async def until(condition: Any, timeout: float = RESPONSE_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not await anyio.to_thread.run_sync(condition):
        assert time.monotonic() < deadline, "condition not met in time"
        await anyio.sleep(0.05)
