"""MCP tool over the task graph: query_graph."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from jetpack.swarm import graph_queries
from jetpack.swarm.graph_queries import MAX_LIMIT, GraphAnswer
from jetpack.tools.common import acting, as_result, tool_errors

_READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def register_graph_tools(mcp: MCPServer) -> None:
    @mcp.tool(annotations=_READ)
    @tool_errors
    async def query_graph(
        kind: Annotated[
            Literal["critical_path", "next", "blockers", "dependents", "waves", "stats"],
            Field(
                description="critical_path: the longest chain of unfinished work; next: ready tasks for you, best "
                "first, score broken down; blockers / dependents: what task_id waits on / what waits on it, "
                "transitively; waves: unfinished work in parallel waves; stats: the graph in figures."
            ),
        ],
        ctx: Context,
        task_id: Annotated[
            str | None, Field(max_length=200, description="The task, for blockers and dependents.")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=MAX_LIMIT, description="Tasks (and waves) to list at most.")] = 10,
    ) -> Annotated[CallToolResult, GraphAnswer]:
        """Ask the task dependency graph: critical path, what to do next and why, what blocks or waits on a
        task, parallel waves, figures. Read-only; `count` tells the full size when a list is cut at `limit`."""
        session, actor = acting(ctx)
        return as_result(graph_queries.query_graph(session.queue, actor, kind, task_id, limit))
