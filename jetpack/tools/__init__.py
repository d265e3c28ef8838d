"""MCP tools, by domain."""

from jetpack.tools.agents import register_agent_tools
from jetpack.tools.tasks import register_task_tools

__all__ = ["register_agent_tools", "register_task_tools"]
