"""MCP resources, by domain."""

from jetpack.resources.tasks import register_task_resources

__all__ = ["register_task_resources"]
