"""MCP tools about agents: identity, and who is alive holding what."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from jetpack.agents import AgentRecord
from jetpack.agents.health import MAX_AGENTS, AgentList, AgentState, LifecycleContext, list_agents
from jetpack.mail import subscribe_topics
from jetpack.tools.common import acting, as_result, session_of, tool_errors


class AgentView(AgentRecord):
    topics: list[str] = Field(default_factory=list)


def register_agent_tools(mcp: MCPServer) -> None:
    @mcp.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        )
    )
    @tool_errors
    async def register_agent(
        ctx: Context,
        name: Annotated[
            str | None,
            Field(
                max_length=64,
                description="Agent name, e.g. 'blue-heron'. Omit to keep (or get) a generated one.",
            ),
        ] = None,
        skills: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=64)]] | None,
            Field(
                max_length=50,
                description="Skills you hold, e.g. ['python', 'sql']; tasks requiring others are not handed to you.",
            ),
        ] = None,
        topics: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=64)]] | None,
            Field(max_length=50, description="Mail topics to subscribe to, e.g. ['frontend', 'db'] (adds to yours)."),
        ] = None,
    ) -> Annotated[CallToolResult, AgentView]:
        """Set this session's agent name and skills (and subscribe to mail topics). A name held by another live
        session is refused."""
        session = session_of(ctx)
        record = session.register(name, skills)
        subscribed = subscribe_topics(session.mail, record.name, topics or [])
        view = AgentView(
            **record.model_copy(update={"session_id": record.session_id[:8]}).model_dump(), topics=subscribed
        )
        return as_result(view)

    @mcp.tool(name="list_agents", annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    @tool_errors
    async def list_agents_tool(
        ctx: Context,
        state: Annotated[
            list[AgentState] | None,
            Field(description="Only agents in these states: active, idle, stale, dead (default: all)."),
        ] = None,
        skill: Annotated[str | None, Field(max_length=64, description="Only agents holding this skill.")] = None,
        holding: Annotated[
            bool | None, Field(description="true: only agents holding claimed tasks; false: only those holding none.")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=MAX_AGENTS)] = 50,
    ) -> Annotated[CallToolResult, AgentList]:
        """Agents with their state (active, idle, stale, dead), seconds since their last heartbeat, skills,
        and the tasks they hold (lease expiry, time budget, over_budget); `counts` has every agent by state."""
        session, _ = acting(ctx)
        lifecycle = LifecycleContext(session.queue, session.registry.settings)
        return as_result(list_agents(lifecycle, states=state, skill=skill, holding=holding, limit=limit))
