"""One agent session per MCP connection, for the transports that serve many connections in one
process (Streamable HTTP and SSE).

On HTTP the SDK enters the server's lifespan once per process, so the lifespan cannot give each
connection its own session the way it does on stdio. ``ConnectionSessions`` is a server
middleware (it sees every inbound message): it keeps each connection's session in the
connection's own state, closes it with the connection, and hands it to the tools where they
always look for it (``ctx.request_context.lifespan_context``).

A 2026-07-28 client over HTTP sends self-contained requests: no connection outlives a request,
so its session is its credential's — one per token; anonymous loopback clients share one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import anyio
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from jetpack.server.session import AgentSession
from jetpack.store import StoreError

log = logging.getLogger(__name__)

_SESSION = "jetpack.session"
_STREAMS = frozenset({"subscriptions/listen"})  # requests that stay open for the connection's life

# The HTTP request a message came in (None when the transport has none).
SessionMaker = Callable[[Any], AgentSession]
CredentialOf = Callable[[Any], str]


class ConnectionSessions:
    def __init__(self, make_session: SessionMaker, credential_of: CredentialOf) -> None:
        self._make_session = make_session
        self._credential_of = credential_of
        self._by_credential: dict[str, AgentSession] = {}

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        return await call_next(replace(ctx, lifespan_context=self.session_for(ctx)))

    def session_for(self, ctx: ServerRequestContext[Any, Any]) -> AgentSession:
        # The SDK (2.3.0) builds the ServerSession around the connection but offers middleware no
        # public handle on it; Connection.state and .exit_stack are its documented per-connection hooks.
        connection: Connection = ctx.session._connection
        if not connection.has_standalone_channel:  # a 2026-era single-exchange request
            key = self._credential_of(ctx.request)
            session = self._by_credential.get(key)
            if session is None:
                session = self._by_credential[key] = self._make_session(ctx.request)
            return session
        session = connection.state.get(_SESSION)
        if session is None:  # the connection's first message (initialize): nothing awaits in between
            session = connection.state[_SESSION] = self._make_session(ctx.request)
            connection.exit_stack.push_async_callback(_close_in_thread, session)
        return session

    def close_all(self) -> None:
        """End the sessions of 2026-era clients (at shutdown; connections close their own)."""
        sessions, self._by_credential = list(self._by_credential.values()), {}
        for session in sessions:
            close_session(session)


class CallsInFlight:
    """Counts the MCP requests being served, so a shutdown can let them finish first."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.request_id is None or ctx.method in _STREAMS:  # nothing a shutdown should wait for
            return await call_next(ctx)
        self.count += 1
        try:
            return await call_next(ctx)
        finally:
            self.count -= 1

    async def wait_idle(self, timeout: float) -> bool:
        """True once no request is in flight; False if some still were after ``timeout`` seconds."""
        with anyio.move_on_after(timeout):
            while self.count:
                await anyio.sleep(0.05)
            return True
        return False


def close_session(session: AgentSession) -> None:
    try:
        session.close()
    except StoreError:
        log.warning("could not record the end of session %s", session.session_id[:8], exc_info=True)


async def _close_in_thread(session: AgentSession) -> None:
    await anyio.to_thread.run_sync(close_session, session)
