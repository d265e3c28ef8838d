"""The MCP surface through the SDK's in-process Client, in both protocol eras (legacy and auto)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp import Client

from jetpack.clock import ManualClock
from jetpack.config import Settings
from jetpack.server import IdentityDefaults, build_parts, create_server
from jetpack.store import DataLayer

pytestmark = pytest.mark.anyio

TOOLS = {
    "register_agent",
    "list_agents",
    "create_tasks",
    "list_tasks",
    "get_task",
    "claim_task",
    "update_task",
    "complete_task",
    "fail_task",
    "add_dependency",
    "query_graph",
    "send_mail",
    "fetch_inbox",
    "mark_mail",
    "get_thread",
    "search_mail",
    "reserve_files",
    "renew_files",
    "release_files",
    "check_files",
    "announce_intent",
    "recall_memory",
    "remember",
    "rate_memory",
}


@pytest.fixture
def server(settings: Settings, store: DataLayer) -> Any:
    # A manual clock: heartbeats and lease renewals happen only when a test moves time.
    return create_server(build_parts(settings, store=store, clock=ManualClock(), identity=IdentityDefaults()))


@asynccontextmanager
async def agent(server: Any, mode: str, name: str, skills: list[str] | None = None) -> AsyncIterator[Client]:
    async with Client(server, mode=mode) as client:
        result = await client.call_tool("register_agent", {"name": name, "skills": skills or []})
        assert not result.is_error, result.content
        yield client


def snapshot(store: DataLayer) -> dict[str, list[dict[str, Any]]]:
    """Everything that tools may change, except heartbeats in the agents table."""
    return {
        table: store.query(f"SELECT * FROM {table} ORDER BY rowid")
        for table in ("tasks", "task_ancestors", "dependencies", "events", "meta")
    }


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content[0].text  # type: ignore[union-attr]
    assert result.structured_content is not None
    text = json.loads(result.content[0].text)  # type: ignore[union-attr]
    assert text == result.structured_content  # the model reads the same data, compactly
    return result.structured_content


async def refused(client: Client, tool: str, **args: Any) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error
    return str(result.content[0].text)  # type: ignore[union-attr]


async def test_the_server_offers_exactly_its_tools_with_short_descriptions(mcp_client: Client) -> None:
    tools = (await mcp_client.list_tools()).tools
    assert {t.name for t in tools} == TOOLS
    for tool in tools:
        assert tool.description and len(tool.description.encode()) <= 2048
        assert tool.output_schema is not None
    read_only = {t.name for t in tools if t.annotations and t.annotations.read_only_hint}
    assert read_only == {
        "list_agents",
        "list_tasks",
        "get_task",
        "query_graph",
        "get_thread",
        "search_mail",
        "check_files",
    }
    params = {t.name: set(t.input_schema["properties"]) for t in tools}
    assert {"task_id"} <= params["get_task"] and {"task_id"} <= params["complete_task"]
    assert params["create_tasks"] == {"tasks"}


async def test_instructions_teach_the_work_loop_within_two_kilobytes(mcp_client: Client) -> None:
    info = mcp_client.initialize_result if hasattr(mcp_client, "initialize_result") else None
    from jetpack.server.app import instructions

    text = instructions()
    assert len(text.encode()) <= 2048
    for step in ("claim_task", "complete_task", "fail_task", "create_tasks"):
        assert step in text
    if info is not None and getattr(info, "instructions", None):
        assert info.instructions == text


async def test_work_loop_create_claim_progress_complete(mcp_client: Client) -> None:
    created = await call(
        mcp_client,
        "create_tasks",
        tasks=[
            {"title": "Schema", "ref": "schema", "skills": ["python"]},
            {"title": "API", "depends_on": ["schema"], "priority": 1},
        ],
    )
    schema, api = (c["id"] for c in created["created"])
    claimed = await call(mcp_client, "claim_task")
    assert claimed["id"] == schema and claimed["assignee"] == "tester" and claimed["lease_expires_at"]
    progress = await call(mcp_client, "update_task", task_id=schema, status="in_progress", note="migrating")
    assert progress["state"] == "in_progress"
    done = await call(mcp_client, "complete_task", task_id=schema, summary="db/001.sql")
    assert done["state"] == "done"
    detail = await call(mcp_client, "get_task", task_id=api)
    assert detail["task"]["state"] == "ready"
    assert [d["id"] for d in detail["depends_on"]] == [schema]
    page = await call(mcp_client, "list_tasks", state=["ready"])
    assert [t["id"] for t in page["tasks"]] == [api]


async def test_claim_with_nothing_ready_returns_no_task_and_a_reason(mcp_client: Client) -> None:
    result = await call(mcp_client, "claim_task")
    assert result["id"] is None and "create_tasks" in result["reason"]


async def test_list_tasks_paginates_with_a_cursor(mcp_client: Client) -> None:
    await call(mcp_client, "create_tasks", tasks=[{"title": f"t{i}"} for i in range(7)])
    seen: list[str] = []
    cursor = None
    while True:
        args: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = await call(mcp_client, "list_tasks", **args)
        seen += [t["id"] for t in page["tasks"]]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    assert len(seen) == 7 == len(set(seen))


async def test_add_dependency_refuses_a_cycle_naming_it(mcp_client: Client) -> None:
    created = await call(
        mcp_client, "create_tasks", tasks=[{"title": "a", "ref": "a"}, {"title": "b", "depends_on": ["a"]}]
    )
    a, b = (c["id"] for c in created["created"])
    message = await refused(mcp_client, "add_dependency", task_id=a, depends_on=b)
    assert "cycle" in message and f"{a} → {b} → {a}" in message


async def test_resources_show_a_task_and_the_ready_queue(mcp_client: Client) -> None:
    created = await call(mcp_client, "create_tasks", tasks=[{"title": "readable"}])
    task_id = created["created"][0]["id"]
    ready = json.loads((await mcp_client.read_resource("jetpack://ready")).contents[0].text)  # type: ignore[union-attr]
    assert [t["id"] for t in ready["tasks"]] == [task_id]
    one = json.loads((await mcp_client.read_resource(f"jetpack://tasks/{task_id}")).contents[0].text)  # type: ignore[union-attr]
    assert one["task"]["title"] == "readable"


async def test_completing_another_agents_claim_is_refused_and_changes_nothing(
    server: Any, store: DataLayer, protocol_mode: str
) -> None:
    async with agent(server, protocol_mode, "alice") as alice, agent(server, protocol_mode, "mallory") as mallory:
        created = await call(alice, "create_tasks", tasks=[{"title": "alice's"}])
        task_id = created["created"][0]["id"]
        await call(alice, "claim_task", task_id=task_id)
        before = snapshot(store)
        for tool, args in (
            ("complete_task", {"task_id": task_id, "summary": "stolen"}),
            ("fail_task", {"task_id": task_id, "reason": "sabotage", "mode": "give_up"}),
            ("update_task", {"task_id": task_id, "status": "blocked", "note": "mine now"}),
        ):
            message = await refused(mallory, tool, **args)
            assert "claimed by alice" in message
        assert "claimed by alice" in await refused(mallory, "claim_task", task_id=task_id)
        assert snapshot(store) == before


async def test_a_live_agent_name_cannot_be_taken_over(server: Any, protocol_mode: str) -> None:
    async with agent(server, protocol_mode, "alice"), Client(server, mode=protocol_mode) as impostor:
        message = await refused(impostor, "register_agent", name="alice")
        assert "held by a live session" in message


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        ("get_task", {"task_id": "jp-zzzz"}, "no task jp-zzzz"),
        ("complete_task", {"task_id": "jp-zzzz"}, "no task jp-zzzz"),
        ("claim_task", {"task_id": "'; DROP TABLE tasks; --"}, "not a task id"),
        ("add_dependency", {"task_id": "jp-zzzz", "depends_on": "jp-yyyy"}, "no task"),
        ("create_tasks", {"tasks": [{"title": "x", "priority": 9}]}, "priority"),
        ("create_tasks", {"tasks": [{"title": "x" * 1_000_000}]}, "at most 500 characters"),
        ("create_tasks", {"tasks": [{"title": ""}]}, "title"),
        ("create_tasks", {"tasks": "not a list"}, "tasks"),
        ("create_tasks", {"tasks": [{"title": "x", "parent": "jp-zzzz"}]}, "no task jp-zzzz"),
        ("create_tasks", {"tasks": [{"title": "x", "unknown_field": 1}]}, "unknown_field"),
        ("create_tasks", {"tasks": []}, "at least 1"),
        ("update_task", {"task_id": "jp-zzzz", "priority": "high"}, "priority"),
        ("update_task", {"task_id": "jp-zzzz", "status": "done"}, "status"),
        ("list_tasks", {"limit": 100_000}, "limit"),
        ("list_tasks", {"cursor": "garbage"}, "cursor"),
        ("list_tasks", {"state": ["finished"]}, "state"),
        ("fail_task", {"task_id": "jp-zzzz", "reason": ""}, "reason"),
        ("fail_task", {"task_id": 12345, "reason": "x"}, "task_id"),
        ("register_agent", {"name": "bad name!"}, "agent name"),
        ("register_agent", {"name": "system"}, "reserved"),
    ],
)
async def test_bad_input_gets_a_clear_error_and_changes_nothing(
    mcp_client: Client, store: DataLayer, tool: str, args: dict[str, Any], expected: str
) -> None:
    await call(mcp_client, "create_tasks", tasks=[{"title": "existing", "children": [{"title": "leaf"}]}])
    before = snapshot(store)
    message = await refused(mcp_client, tool, **args)
    assert expected in message
    assert len(message) < 2000
    assert snapshot(store) == before


async def test_strings_that_look_like_sql_are_stored_verbatim(mcp_client: Client, store: DataLayer) -> None:
    title = "Robert'); DROP TABLE tasks; --"
    created = await call(mcp_client, "create_tasks", tasks=[{"title": title, "description": "x' OR '1'='1"}])
    detail = await call(mcp_client, "get_task", task_id=created["created"][0]["id"])
    assert detail["task"]["title"] == title
    assert store.query("SELECT count(*) AS n FROM tasks")[0]["n"] == 1
    page = await call(mcp_client, "list_tasks", text="'); drop")
    assert len(page["tasks"]) == 1


async def test_codex_session_id_from_call_meta_is_recorded(server: Any, store: DataLayer, protocol_mode: str) -> None:
    async with Client(server, mode=protocol_mode) as client:
        result = await client.call_tool(
            "list_tasks", {}, meta={"x-codex-turn-metadata": json.dumps({"session_id": "codex-thread-7"})}
        )
        assert not result.is_error
    rows = store.query("SELECT client_session_id FROM agents")
    assert rows == [{"client_session_id": "codex-thread-7"}]
