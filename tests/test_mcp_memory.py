"""Memory through the MCP tools: remember and recall, refusals that store nothing, memories that come
with a claim, learnings kept at completion, and a model that loads only when memory is used."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from jetpack.config import Settings
from jetpack.memory.embedders import Embedder, create_embedder
from jetpack.server import IdentityDefaults, build_parts, create_server
from jetpack.server.app import ServerParts
from jetpack.store import DataLayer

pytestmark = pytest.mark.anyio


@pytest.fixture
def parts(settings: Settings, store: DataLayer) -> ServerParts:
    identity = IdentityDefaults(name="tester", skills=("python",))
    return build_parts(settings, store=store, identity=identity, embedder=create_embedder("hash"))


async def ok(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content[0].text  # type: ignore[union-attr]
    return result.structured_content or {}


async def refused(client: Client, tool: str, **args: Any) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, f"{tool}({args}) was accepted"
    return str(result.content[0].text)  # type: ignore[union-attr]


def count(store: DataLayer, table: str) -> int:
    return int(store.query(f"SELECT count(*) AS n FROM {table}")[0]["n"])


async def test_remember_then_recall_with_filters(parts: ServerParts, protocol_mode: str) -> None:
    async with Client(create_server(parts), mode=protocol_mode) as client:
        kept = await ok(
            client, "remember", content="The staging database is reset every Sunday at 02:00 UTC", tags=["ops"]
        )
        assert not kept.get("merged") and kept["layer"] == "episodic"  # defaults are left out
        await ok(client, "remember", content="Scratch: the flaky test is test_upload_retry", layer="working")
        again = await ok(client, "remember", content="the staging database is reset every Sunday at 02:00 UTC")
        assert again["merged"] is True and again["id"] == kept["id"]

        found = await ok(client, "recall_memory", query="staging database reset Sunday")
        assert found["memories"][0]["id"] == kept["id"]
        assert found["memories"][0]["tags"] == ["ops"]
        only_working = await ok(client, "recall_memory", query="staging database", layers=["working"])
        assert all(hit["layer"] == "working" for hit in only_working["memories"])
        tagged = await ok(client, "recall_memory", query="staging database or the flaky test", tags=["ops"])
        assert [hit["id"] for hit in tagged["memories"]] == [kept["id"]]

        before = (await ok(client, "rate_memory", memory_id=kept["id"], helpful=False))["importance"]
        rated = await ok(client, "rate_memory", memory_id=kept["id"], helpful=True)
        assert rated["importance"] == pytest.approx(before + 0.1)


BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("recall_memory", {"query": ""}, "query"),
    ("recall_memory", {"query": "x", "k": 0}, "k"),
    ("recall_memory", {"query": "x", "k": 10_000}, "k"),
    ("recall_memory", {"query": "x", "layers": ["semantic"]}, "layers"),
    ("remember", {"content": ""}, "content"),
    ("remember", {"content": "x" * 1_000_000}, "content"),
    ("remember", {"content": "a fact", "layer": "semantic"}, "layer"),
    ("remember", {"content": "a fact", "importance": 7}, "importance"),
    ("remember", {"content": "a fact", "importance": float("nan")}, "importance"),
    ("remember", {"content": "a fact", "ttl_seconds": 60}, "ttl"),
    ("remember", {"content": "a fact", "task_id": "jp-zzzz"}, "jp-zzzz"),
    ("remember", {"content": "a fact", "tags": ["x" * 200]}, "tag"),
    ("rate_memory", {"memory_id": 999, "helpful": True}, "999"),
    ("rate_memory", {"memory_id": 0, "helpful": True}, "memory_id"),
]


@pytest.mark.parametrize(("tool", "args", "mentions"), BAD_CALLS, ids=[f"{t}-{m}" for t, _, m in BAD_CALLS])
async def test_bad_input_is_refused_with_the_field_named_and_nothing_stored(
    parts: ServerParts, store: DataLayer, tool: str, args: dict[str, Any], mentions: str
) -> None:
    async with Client(create_server(parts), mode="legacy") as client:
        message = await refused(client, tool, **args)
        assert mentions in message
        assert count(store, "memories") == 0 and count(store, "memory_tags") == 0


async def test_a_claim_brings_memories_and_completion_keeps_the_outcome_and_learnings(
    parts: ServerParts, store: DataLayer
) -> None:
    async with Client(create_server(parts), mode="legacy") as client:
        await ok(
            client,
            "remember",
            content="Password hashing uses bcrypt with cost 12 in auth/passwords.py; never use md5",
            tags=["auth"],
        )
        created = await ok(
            client,
            "create_tasks",
            tasks=[{"title": "Add password hashing to signup", "files": ["auth/passwords.py"]}],
        )
        task_id = created["created"][0]["id"]
        claimed = await ok(client, "claim_task")
        assert claimed["id"] == task_id
        assert any("bcrypt" in hit["snippet"] for hit in claimed["memories"])
        assert count(store, "memory_uses") >= 1

        await refused(client, "complete_task", task_id=task_id, summary="done", learnings=["x"] * 21)
        assert count(store, "memories") == 1  # the refused completion kept nothing
        await ok(
            client,
            "complete_task",
            task_id=task_id,
            summary="Hashed passwords with bcrypt in auth/passwords.py",
            learnings=["Signup tests need the BCRYPT_ROUNDS=4 env var to stay fast"],
        )
        outcome = await ok(client, "recall_memory", query="signup password hashing", task_id=task_id)
        assert any(task_id in hit["snippet"] for hit in outcome["memories"])
        learned = await ok(client, "recall_memory", query="BCRYPT_ROUNDS env var for fast signup tests")
        assert "BCRYPT_ROUNDS=4" in learned["memories"][0]["snippet"]


async def test_the_model_loads_only_when_memory_is_used(settings: Settings, store: DataLayer) -> None:
    embedder: Embedder = create_embedder("onnx")
    parts = build_parts(settings, store=store, identity=IdentityDefaults(name="tester"), embedder=embedder)
    async with Client(create_server(parts), mode="legacy") as client:
        await ok(client, "create_tasks", tasks=[{"title": "Write the changelog"}])
        await ok(client, "list_tasks")
        await ok(client, "claim_task")  # no memories yet: nothing to embed
        assert not embedder.loaded()
        await ok(client, "recall_memory", query="changelog")  # nothing stored: nothing to compare with
        assert not embedder.loaded()
        await ok(client, "remember", content="The changelog follows Keep a Changelog")
        assert embedder.loaded()
        found = await ok(client, "recall_memory", query="which changelog format")
        assert "Keep a Changelog" in found["memories"][0]["snippet"]
