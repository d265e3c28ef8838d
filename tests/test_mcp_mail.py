"""Agent Mail and reservations through the MCP tools: notices, push, intents, claims that come informed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp import Client, MCPDeprecationWarning

from jetpack.config import Settings
from jetpack.server import IdentityDefaults, build_parts, create_server
from jetpack.store import DataLayer

pytestmark = pytest.mark.anyio


@pytest.fixture
def server(settings: Settings, store: DataLayer) -> Any:
    return create_server(build_parts(settings, store=store, identity=IdentityDefaults()))


@asynccontextmanager
async def agent(server: Any, mode: str, name: str, **client: Any) -> AsyncIterator[Client]:
    async with Client(server, mode=mode, **client) as session:
        result = await session.call_tool("register_agent", {"name": name})
        assert not result.is_error, result.content
        yield session


async def ok(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content[0].text  # type: ignore[union-attr]
    return result.structured_content or {}


async def texts(client: Client, tool: str, **args: Any) -> list[str]:
    result = await client.call_tool(tool, args)
    return [block.text for block in result.content]  # type: ignore[union-attr]


def stored(store: DataLayer) -> tuple[int, int, int]:
    counts = [store.query(f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in ("messages", "deliveries", "reservations")]
    return counts[0], counts[1], counts[2]


async def test_every_result_carries_a_notice_while_urgent_or_ack_mail_waits(server: Any, protocol_mode: str) -> None:
    async with agent(server, protocol_mode, "alice") as alice, agent(server, protocol_mode, "bob") as bob:
        assert len(await texts(bob, "list_tasks")) == 1
        sent = await ok(alice, "send_mail", to=["bob"], subject="prod is down", importance="urgent")
        success = await texts(bob, "list_tasks")
        assert success[-1].startswith("[mail] 1 urgent unread")
        fetched = await texts(bob, "fetch_inbox")  # its notice comes from the counts of the page it read
        assert fetched[-1].startswith("[mail] 1 urgent unread") and len(fetched) == 2
        error = await texts(bob, "get_task", task_id="jp-zzzz")
        assert "no task jp-zzzz" in error[0] and "[mail] 1 urgent unread" in error[0]
        await ok(bob, "mark_mail", message_ids=[sent["id"]])
        assert len(await texts(bob, "list_tasks")) == 1
        await ok(alice, "send_mail", to=["bob"], subject="sign off?", ack_required=True)
        assert "awaiting your acknowledgement" in (await texts(bob, "list_tasks"))[-1]


async def test_subscribers_of_an_inbox_are_told_when_mail_arrives(server: Any) -> None:
    updates: list[str] = []

    async def on_message(message: Any) -> None:
        uri = getattr(getattr(message, "params", None), "uri", None)
        if uri:
            updates.append(str(uri))

    async with (
        agent(server, "legacy", "alice") as alice,
        agent(server, "legacy", "bob", message_handler=on_message) as bob,
    ):
        with pytest.warns(MCPDeprecationWarning):  # today's clients still subscribe this way
            await bob.subscribe_resource("jetpack://inbox/bob")
        await ok(alice, "send_mail", to=["bob"], subject="ping")
        with anyio.fail_after(5):
            while not updates:
                await anyio.sleep(0.05)
        assert updates == ["jetpack://inbox/bob"]
        inbox = json.loads((await bob.read_resource("jetpack://inbox/bob")).contents[0].text)  # type: ignore[union-attr]
        assert [m["subject"] for m in inbox["messages"]] == ["ping"]


async def test_an_intent_reserves_and_tells_only_the_agents_it_concerns(
    server: Any, store: DataLayer, protocol_mode: str
) -> None:
    async with (
        agent(server, protocol_mode, "alice") as alice,
        agent(server, protocol_mode, "bob") as bob,
        agent(server, protocol_mode, "carol") as carol,
        agent(server, protocol_mode, "dan") as dan,
    ):
        tasks = await ok(
            alice,
            "create_tasks",
            tasks=[{"title": "api"}, {"title": "ui", "files": ["web/src/api_client.ts"]}, {"title": "docs"}],
        )
        api, ui, _ = (t["id"] for t in tasks["created"])
        await ok(bob, "reserve_files", paths=["src/api/handlers.py"])
        await ok(carol, "claim_task", task_id=ui)
        await ok(dan, "reserve_files", paths=["docs/**"])
        await ok(alice, "claim_task", task_id=api)
        intent = await ok(
            alice, "announce_intent", task_id=api, files=["src/api/**", "web/src/*.ts"], summary="new error format"
        )
        assert intent["notified"] == ["bob", "carol"]
        for name, client in (("bob", bob), ("carol", carol)):
            inbox = await ok(client, "fetch_inbox", include_bodies=True)
            [message] = inbox["messages"]
            assert (message["kind"], message["thread_id"], message["sender"]) == ("intent", api, "alice"), name
        assert (await ok(dan, "fetch_inbox"))["messages"] == []
        done = await ok(alice, "complete_task", task_id=api, summary="done", files=["src/api/errors.py"])
        assert done["files_touched"] == ["src/api/errors.py"]
        active = store.query("SELECT agent FROM reservations WHERE released_at IS NULL ORDER BY agent")
        assert [r["agent"] for r in active] == ["bob", "dan"]  # alice's intent is closed


async def test_a_claim_comes_back_with_conflicts_on_its_planned_files_and_unread_mail(
    server: Any, protocol_mode: str
) -> None:
    async with agent(server, protocol_mode, "alice") as alice, agent(server, protocol_mode, "bob") as bob:
        await ok(alice, "create_tasks", tasks=[{"title": "db", "files": ["db/migrations/**"]}])
        await ok(bob, "reserve_files", paths=["db/migrations/0007.sql"], mode="exclusive", reason="hotfix")
        await ok(bob, "send_mail", to=["alice"], subject="heads up")
        claimed = await ok(alice, "claim_task")
        [conflict] = claimed["conflicts"]
        assert (conflict["holder"], conflict["pattern"], conflict["exclusive"]) == (
            "bob",
            "db/migrations/0007.sql",
            True,
        )
        assert claimed["unread_mail"] == 1


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        ("send_mail", {"subject": "x"}, "no recipients"),
        ("send_mail", {"to": [], "subject": "x"}, "no recipients"),
        ("send_mail", {"to": ["bobb"], "subject": "x"}, "did you mean bob"),
        ("send_mail", {"to": ["bob"], "subject": "x", "body": "x" * 10_000_000}, "at most 100000 characters"),
        ("send_mail", {"to": ["bob"], "subject": "x", "importance": "critical"}, "importance"),
        ("reserve_files", {"paths": ["src/[abc.py"]}, "["),
        ("reserve_files", {"paths": ["../../etc/passwd"]}, "outside the repository"),
        ("reserve_files", {"paths": []}, "paths"),
        ("check_files", {"paths": ["src/a**b"]}, "**"),
        ("search_mail", {"query": '"(*)"'}, "no words"),
        ("release_files", {}, "one of them"),
        ("mark_mail", {"message_ids": []}, "message_ids"),
        ("get_thread", {"thread_id": "no such thread!"}, "not a thread id"),
        ("announce_intent", {"task_id": "jp-zzzz", "files": ["a"], "summary": "x"}, "no task jp-zzzz"),
    ],
)
async def test_bad_mail_and_reservation_input_gets_a_clear_error_and_stores_nothing(
    server: Any, store: DataLayer, protocol_mode: str, tool: str, args: dict[str, Any], expected: str
) -> None:
    async with agent(server, protocol_mode, "alice") as alice, agent(server, protocol_mode, "bob"):
        before = stored(store)
        result = await alice.call_tool(tool, args)
        assert result.is_error
        assert expected in result.content[0].text  # type: ignore[union-attr]
        assert stored(store) == before


async def test_search_syntax_is_searched_as_plain_words(server: Any, protocol_mode: str) -> None:
    async with agent(server, protocol_mode, "alice") as alice, agent(server, protocol_mode, "bob"):
        await ok(alice, "send_mail", to=["bob"], subject="deadlock", body='lock "NEAR" OR timeout')
        hits = await ok(alice, "search_mail", query='NEAR OR "timeout')
        assert [h["subject"] for h in hits["hits"]] == ["deadlock"]
        assert (await ok(alice, "search_mail", query="subject:deadlock AND *"))["hits"] == []
