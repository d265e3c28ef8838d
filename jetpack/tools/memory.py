"""MCP tools of memory."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from jetpack.memory import learning, recall, writing
from jetpack.memory.model import CONTENT_MAX, Layer, MemoryView, NewMemory, RecallResult, RememberResult
from jetpack.tools.common import acting, as_result, tool_errors

_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)


def register_memory_tools(mcp: MCPServer) -> None:
    @mcp.tool(annotations=_WRITE)  # counts accesses
    @tool_errors
    async def recall_memory(
        query: Annotated[str, Field(min_length=1, max_length=2000, description="What you want to know, in words.")],
        ctx: Context,
        layers: Annotated[list[Layer] | None, Field(description="episodic, working, procedural; default all.")] = None,
        k: Annotated[int, Field(ge=1, le=50)] = 5,
        task_id: Annotated[str | None, Field(max_length=200, description="Only memories of this task.")] = None,
        tags: Annotated[
            list[str] | None, Field(max_length=10, description="Only memories with all these tags.")
        ] = None,
        min_score: Annotated[float, Field(ge=0, le=2)] = 0.0,
    ) -> Annotated[CallToolResult, RecallResult]:
        """Memories relevant to a question, by meaning (exact words help), best first, as short snippets with
        ids and scores. Working memory that has expired is never returned."""
        session, _ = acting(ctx)
        hits = recall.recall(session.memory, query, layers=layers, k=k, task_id=task_id, tags=tags, min_score=min_score)
        return as_result(RecallResult(memories=hits))

    @mcp.tool(annotations=_WRITE)
    @tool_errors
    async def remember(
        content: Annotated[str, Field(min_length=1, max_length=CONTENT_MAX, description="One fact or insight.")],
        ctx: Context,
        layer: Annotated[
            Layer,
            Field(
                description="episodic: what happened (kept); working: scratch context (expires); procedural: "
                "how to do something ('when …, do …')."
            ),
        ] = Layer.EPISODIC,
        tags: Annotated[list[str], Field(max_length=20)] = [],  # noqa: B006 - pydantic copies defaults
        task_id: Annotated[str | None, Field(max_length=200)] = None,
        importance: Annotated[float, Field(ge=0, le=1)] = 0.5,
        ttl_seconds: Annotated[int | None, Field(ge=1, description="Working memory only (default 24 h).")] = None,
    ) -> Annotated[CallToolResult, RememberResult]:
        """Store a memory for yourself and other agents. A near-duplicate in the same layer is merged into the
        existing one (its importance raised) instead of stored twice."""
        session, actor = acting(ctx)
        memory = NewMemory(
            content=content, layer=layer, tags=tags, task_id=task_id, importance=importance, ttl_seconds=ttl_seconds
        )
        return as_result(writing.remember(session.memory, actor.name, memory))

    @mcp.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
        )
    )
    @tool_errors
    async def rate_memory(
        memory_id: Annotated[int, Field(ge=1)],
        helpful: bool,
        ctx: Context,
    ) -> Annotated[CallToolResult, MemoryView]:
        """Say whether a memory helped: a learned procedure's confidence (or another memory's importance)
        goes up or down, which changes how it ranks."""
        session, _ = acting(ctx)
        return as_result(learning.rate_memory(session.memory, memory_id, helpful))
