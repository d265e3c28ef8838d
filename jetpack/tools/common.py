"""What every tool shares: finding the session, acting as its agent, errors and compact results."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, ValidationError

from jetpack.actor import Actor
from jetpack.errors import JetpackError
from jetpack.mail import attention_notice
from jetpack.mail.inbox import notice_text
from jetpack.server.session import AgentSession
from jetpack.store import StoreBusy, StoreUnreachable
from jetpack.tasks.model import compact, describe_validation_error

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def session_of(ctx: Context) -> AgentSession:
    session = ctx.request_context.lifespan_context
    if not isinstance(session, AgentSession):  # pragma: no cover - wiring error
        raise RuntimeError("the Jetpack server was started without its lifespan")
    return session


def acting(ctx: Context) -> tuple[AgentSession, Actor]:
    """The session and the agent it acts as (registering it on first use; a heartbeat otherwise)."""
    session = session_of(ctx)
    client = None
    client_params = getattr(ctx.session, "client_params", None)
    if client_params is not None and client_params.client_info is not None:
        client = client_params.client_info.name
    session.observe_client(client, ctx.request_context.meta)
    return session, session.actor()


def as_result(payload: BaseModel | dict[str, Any]) -> CallToolResult:
    """Structured content for programs, the same data as compact JSON text for the model."""
    data = compact(payload) if isinstance(payload, BaseModel) else payload
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def tool_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn caller-caused failures into ToolErrors the model can act on, and add the mail notice
    (unread urgent or ack-required mail) to every result, success or error."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        ctx: Any = kwargs.get("ctx")
        if ctx is not None:
            session_of(ctx).attention_seen = None
        try:
            result = await fn(*args, **kwargs)
        except JetpackError as error:
            raise ToolError(_with_notice(str(error), ctx)) from None
        except ValidationError as error:  # a model built inside the tool from checked arguments
            raise ToolError(_with_notice(describe_validation_error(error, "input"), ctx)) from None
        except StoreBusy as error:
            log.warning("store busy: %s", error)
            raise ToolError(_with_notice(f"{error}. Nothing was changed; call again in a few seconds", ctx)) from None
        except StoreUnreachable as error:  # the message says whether a write may have been applied
            log.warning("%s", error)
            raise ToolError(str(error)) from None  # no mail notice: reading it needs the DataLayer
        notice = mail_notice(ctx)
        if notice and isinstance(result, CallToolResult):
            result.content.append(TextContent(type="text", text=notice))
        return result

    return wrapper


def mail_notice(ctx: Any) -> str | None:
    """The one-line mail notice for the session's agent, if it has registered and mail waits."""
    if ctx is None:
        return None
    session = session_of(ctx)
    agent = session.agent_name
    if agent is None:
        return None
    seen, session.attention_seen = session.attention_seen, None
    return notice_text(*seen) if seen is not None else attention_notice(session.mail, agent)


def _with_notice(message: str, ctx: Any) -> str:
    try:
        notice = mail_notice(ctx)
    except (StoreBusy, StoreUnreachable):
        notice = None
    return message if notice is None else f"{message}\n{notice}"
