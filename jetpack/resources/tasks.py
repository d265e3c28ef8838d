"""MCP resources of the task queue: one task, and the ready queue."""

from __future__ import annotations

import json

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError

from jetpack import tasks as task_queue
from jetpack.errors import JetpackError
from jetpack.tasks.model import compact


def register_task_resources(mcp: MCPServer, queue: task_queue.QueueContext) -> None:
    @mcp.resource("jetpack://tasks/{task_id}", mime_type="application/json", title="Task")
    async def task_resource(task_id: str) -> str:
        """One task with its dependencies, subtasks and recent events."""
        try:
            detail = task_queue.get_task(queue, task_id)
        except JetpackError as error:
            raise ResourceError(str(error)) from None
        return json.dumps(compact(detail), separators=(",", ":"))

    @mcp.resource("jetpack://ready", mime_type="application/json", title="Ready queue")
    async def ready_resource() -> str:
        """The first 50 ready tasks in the order claim_task hands them out."""
        page = task_queue.ready_tasks(queue, limit=50)
        return json.dumps(compact(page), separators=(",", ":"))
