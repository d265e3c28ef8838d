"""MCP resources, by domain."""

from jetpack.resources.mail import register_mail_resources
from jetpack.resources.tasks import register_task_resources

__all__ = ["register_mail_resources", "register_task_resources"]
