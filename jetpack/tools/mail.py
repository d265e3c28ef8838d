"""MCP tools of Agent Mail."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field

from jetpack import mail
from jetpack.mail.model import BODY_MAX, KIND, RECIPIENTS_MAX, SUBJECT_MAX, THREAD_ID, TOPIC, Importance
from jetpack.tools.common import acting, as_result, tool_errors

_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
_READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)


class SearchResult(BaseModel):
    hits: list[mail.SearchHit]


def register_mail_tools(mcp: MCPServer) -> None:
    @mcp.tool(annotations=_WRITE)
    @tool_errors
    async def send_mail(
        ctx: Context,
        to: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=64)]],
            Field(max_length=RECIPIENTS_MAX, description="Agent names, or ['*'] for every live agent."),
        ] = [],  # noqa: B006 - pydantic copies defaults
        subject: Annotated[str | None, Field(max_length=SUBJECT_MAX, description="Optional on replies.")] = None,
        body: Annotated[str, Field(max_length=BODY_MAX, description="Markdown.")] = "",
        topic: Annotated[
            str | None, Field(pattern=TOPIC, description="Also deliver to this topic's subscribers.")
        ] = None,
        thread_id: Annotated[str | None, Field(pattern=THREAD_ID, description="Omit for a new thread.")] = None,
        reply_to: Annotated[
            int | None, Field(ge=1, description="Message id you answer: inherits thread, importance, ack.")
        ] = None,
        importance: Importance | None = None,
        ack_required: bool | None = None,
        kind: Annotated[str, Field(pattern=KIND, description="note, question, handoff, intent, status, …")] = "note",
        task_id: Annotated[str | None, Field(max_length=200, description="The task it is about (its thread).")] = None,
    ) -> Annotated[CallToolResult, mail.SentMessage]:
        """Send a message to agents, to '*' (every live agent) or a topic; reply with reply_to."""
        session, actor = acting(ctx)
        message = mail.NewMessage(
            to=to,
            subject=subject,
            body=body,
            topic=topic,
            thread_id=thread_id,
            reply_to=reply_to,
            importance=importance,
            ack_required=ack_required,
            kind=kind,
            task_id=task_id,
        )
        return as_result(mail.send_mail(session.mail, mail.Sender(actor.name), message))

    @mcp.tool(annotations=_WRITE)
    @tool_errors
    async def fetch_inbox(
        ctx: Context,
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
        include_bodies: Annotated[bool, Field(description="Full bodies instead of snippets.")] = False,
        unread_only: Annotated[bool, Field(description="All unread mail, newest first (cursor unchanged).")] = False,
        urgent_only: Annotated[bool, Field(description="Only high/urgent mail (cursor unchanged).")] = False,
    ) -> Annotated[CallToolResult, mail.InboxPage]:
        """Mail that arrived since your last fetch (each message once; `more` says there is more). Filters
        give a view of unread mail instead. Mark messages read or acknowledged with mark_mail."""
        session, actor = acting(ctx)
        page = mail.fetch_inbox(
            session.mail,
            actor.name,
            limit=limit,
            include_bodies=include_bodies,
            unread_only=unread_only,
            urgent_only=urgent_only,
        )
        session.attention_seen = (page.urgent_unread, page.ack_pending)  # the mail notice needs no second read
        return as_result(page)

    @mcp.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        )
    )
    @tool_errors
    async def mark_mail(
        message_ids: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1, max_length=500)],
        ctx: Context,
        read: bool = True,
        acknowledge: Annotated[bool, Field(description="Acknowledge (for ack_required mail); implies read.")] = False,
    ) -> Annotated[CallToolResult, mail.MarkResult]:
        """Mark your messages read and/or acknowledged. Safe to repeat."""
        session, actor = acting(ctx)
        return as_result(
            mail.mark_mail(session.mail, actor.name, message_ids, read=read or acknowledge, acknowledge=acknowledge)
        )

    @mcp.tool(annotations=_READ)
    @tool_errors
    async def get_thread(
        thread_id: Annotated[str, Field(max_length=128)],
        ctx: Context,
        include_bodies: bool = True,
        limit: Annotated[int, Field(ge=1, le=200)] = 50,
    ) -> Annotated[CallToolResult, mail.ThreadView]:
        """A whole conversation, oldest first (a task's thread id is the task id)."""
        session, actor = acting(ctx)
        view = mail.get_thread(session.mail, thread_id, viewer=actor.name, include_bodies=include_bodies, limit=limit)
        return as_result(view)

    @mcp.tool(annotations=_READ)
    @tool_errors
    async def search_mail(
        query: Annotated[str, Field(min_length=1, max_length=500, description="Words to find (plain text).")],
        ctx: Context,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
    ) -> Annotated[CallToolResult, SearchResult]:
        """Find messages whose subject or body contain all the words, best matches first."""
        session, _ = acting(ctx)
        return as_result(SearchResult(hits=mail.search_mail(session.mail, query, limit=limit)))
