"""The MCP application: one MCPServer with Jetpack's tools, resources and instructions.

``create_server`` wires entrypoints to services; each connection gets its own agent session,
and the lifespan runs the lease sweeper, so no separate daemon is ever needed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

import anyio
from mcp.server.context import ServerMiddleware
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus

from jetpack import __version__
from jetpack.agents import AgentRegistry
from jetpack.agents.health import LifecycleContext
from jetpack.clock import Clock, SystemClock
from jetpack.config import Settings
from jetpack.mail import MailContext, index_new_messages
from jetpack.memory.context import MemoryContext
from jetpack.memory.embedders import Embedder
from jetpack.memory.writing import sweep_expired_memories
from jetpack.reservations.service import ReservationContext, sweep_expired_reservations
from jetpack.resources import register_mail_resources, register_task_resources
from jetpack.resources.mail import InboxWatcher
from jetpack.server.connections import ConnectionSessions, close_session
from jetpack.server.session import AgentSession, IdentityDefaults
from jetpack.store import DataLayer, SQLiteDataLayer, StoreError, open_store
from jetpack.swarm.recovery import recover
from jetpack.tasks import QueueContext, release_expired_leases
from jetpack.tools import (
    register_agent_tools,
    register_graph_tools,
    register_mail_tools,
    register_memory_tools,
    register_reservation_tools,
    register_task_tools,
)

log = logging.getLogger(__name__)


@dataclass
class ServerParts:
    """The long-lived pieces shared by every connection of one server process."""

    settings: Settings
    store: DataLayer
    queue: QueueContext
    registry: AgentRegistry
    mail: MailContext
    reservations: ReservationContext
    memory: MemoryContext
    identity: IdentityDefaults


def build_parts(
    settings: Settings,
    *,
    store: DataLayer | None = None,
    clock: Clock | None = None,
    identity: IdentityDefaults | None = None,
    embedder: Embedder | None = None,
) -> ServerParts:
    clock = clock or SystemClock()
    store = store or open_store(settings.db_location, auth_token=settings.db_auth_token)
    if isinstance(store, SQLiteDataLayer):
        store.checkpoint_in_background()
    return ServerParts(
        settings=settings,
        store=store,
        queue=QueueContext(store=store, settings=settings.tasks, clock=clock, swarm=settings.swarm),
        registry=AgentRegistry(store, settings.agents, clock),
        mail=MailContext.for_settings(settings, store, clock),
        reservations=ReservationContext.for_settings(settings, store, clock),
        memory=MemoryContext.for_settings(settings, store, clock, embedder),
        identity=identity or IdentityDefaults.from_environ(),
    )


def instructions() -> str:
    return (resources.files("jetpack.server") / "instructions.md").read_text()


def new_session(
    parts: ServerParts,
    *,
    defaults: IdentityDefaults | None = None,
    authorize_name: Callable[[str], None] | None = None,
    session_id: str | None = None,
) -> AgentSession:
    session = AgentSession(
        queue=parts.queue,
        registry=parts.registry,
        mail=parts.mail,
        reservations=parts.reservations,
        memory=parts.memory,
        defaults=defaults or parts.identity,
        authorize_name=authorize_name,
    )
    if session_id is not None:  # a hub continuing a relay's session
        session.session_id = session_id
    return session


def create_server(
    parts: ServerParts,
    session_factory: Callable[[], AgentSession] | None = None,
    *,
    connections: ConnectionSessions | None = None,
    middleware: Sequence[ServerMiddleware[Any]] = (),
) -> MCPServer:
    """The MCP server. Its lifespan runs the lease sweeper and the inbox watcher, and on stdio
    gives the connection its agent session from ``session_factory`` (a new one by default; the
    stdio transport passes its own, to serve hot calls directly). The HTTP transports pass
    ``connections`` instead: there the lifespan is entered once per process, and each MCP
    connection gets its own session from that middleware."""
    bus = InMemorySubscriptionBus()
    watcher = InboxWatcher(parts.mail, bus)

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[AgentSession | ConnectionSessions]:
        state = connections or (session_factory() if session_factory else new_session(parts))
        async with anyio.create_task_group() as group:
            group.start_soon(_sweep_forever, parts)
            group.start_soon(watcher.run)
            try:
                yield state
            finally:
                group.cancel_scope.cancel()
                if isinstance(state, AgentSession):
                    close_session(state)
                else:
                    state.close_all()

    mcp = MCPServer(
        "jetpack",
        version=__version__,
        instructions=instructions(),
        lifespan=lifespan,
        subscriptions=bus,
        middleware=[*middleware, *([connections] if connections else [])],
    )
    register_agent_tools(mcp)
    register_task_tools(mcp)
    register_graph_tools(mcp)
    register_mail_tools(mcp)
    register_reservation_tools(mcp)
    register_memory_tools(mcp)
    register_task_resources(mcp, parts.queue)
    register_mail_resources(mcp, parts.mail, watcher)
    return mcp


async def _sweep_forever(parts: ServerParts) -> None:
    """Recover the work of dead agents and stalled tasks, return lapsed claims to the queue and retire
    lapsed reservations every few seconds (claims also sweep leases before they run, and expired
    reservations stop counting the moment they expire)."""
    interval = parts.settings.server.sweep_interval_seconds
    lifecycle = LifecycleContext(parts.queue, parts.settings.agents)
    while True:
        await anyio.sleep(interval)
        try:
            recover(lifecycle)
            expired = release_expired_leases(parts.queue)
            sweep_expired_reservations(parts.reservations)
            sweep_expired_memories(parts.memory)
            index_new_messages(parts.mail.store)
        except StoreError:
            log.warning("sweep failed; will retry", exc_info=True)
            continue
        for row in expired:
            log.info("lease expired on %s; now %s", row["id"], row["state"])
