"""MCP tools, by domain."""

from jetpack.tools.agents import register_agent_tools
from jetpack.tools.graph import register_graph_tools
from jetpack.tools.mail import register_mail_tools
from jetpack.tools.memory import register_memory_tools
from jetpack.tools.reservations import register_reservation_tools
from jetpack.tools.tasks import register_task_tools

# Tools that use nothing of the MCP Context beyond the session's identity (session_of/acting),
# so the stdio transport may answer their calls directly (jetpack/server/stdio.py), and whose
# bodies never await, so the HTTP transports run them on worker threads (jetpack/server/http.py).
# A tool that reports progress, sends notifications or reads other Context members must not be listed.
DIRECT_TOOLS = frozenset(
    {
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
)

__all__ = [
    "DIRECT_TOOLS",
    "register_agent_tools",
    "register_graph_tools",
    "register_mail_tools",
    "register_memory_tools",
    "register_reservation_tools",
    "register_task_tools",
]
