"""The HTTP transports: Streamable HTTP at ``/mcp``, SSE at ``/sse`` (for older clients),
``GET /healthz``, and the dashboard at ``/`` (jetpack/dashboard), served by uvicorn
(``jetpack serve --http``).

One MCPServer serves both transports. Every MCP connection is its own agent session
(``ConnectionSessions``); the lease sweeper and the inbox watcher run once per process. Tool
bodies run on worker threads: with many sessions in one process, a call waiting on the database
(a busy SQLite writer lock, a remote libSQL round trip, the embedding model loading) must not
stall every other session's calls, its notifications, or the health check.

Shutdown (SIGTERM or SIGINT): uvicorn stops accepting connections; the calls in flight finish
and their answers are sent; then the event streams close, each session records its end, and the
caller closes the DataLayer.
"""

from __future__ import annotations

import functools
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.runner import serve_dual_era_loop
from mcp.server.sse import SseServerTransport
from mcp.server.transport_security import TransportSecuritySettings
from sse_starlette.sse import AppStatus
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from jetpack import __version__
from jetpack.auth import TokenRecord, TokenRegistry
from jetpack.dashboard.app import DashboardParts, dashboard_routes, guard_policy
from jetpack.mail.search import has_fts
from jetpack.server.app import ServerParts, create_server, new_session
from jetpack.server.connections import CallsInFlight, ConnectionSessions
from jetpack.server.http_guard import TRUSTED_SCOPE_KEY, HttpGuard, credential_of, token_of
from jetpack.server.http_options import (
    HEALTH_PATH,
    MCP_PATH,
    SSE_MESSAGES_PATH,
    SSE_PATH,
    HttpOptions,
    is_loopback,
    transport_security,
)
from jetpack.server.session import AgentSession, IdentityDefaults
from jetpack.store import DataLayer, SQLiteDataLayer, StoreError
from jetpack.tools import DIRECT_TOOLS

log = logging.getLogger(__name__)


def build_http_app(
    parts: ServerParts, options: HttpOptions, *, stopping: Callable[[], bool] = lambda: False
) -> Starlette:
    """The ASGI application. ``stopping`` tells when the server has begun shutting down."""
    tokens = TokenRegistry(parts.store)
    started = time.monotonic()

    def make_session(request: Any) -> AgentSession:
        token = token_of(request)
        defaults = IdentityDefaults(name=token.agent if token else None, skills=parts.identity.skills)
        return new_session(parts, defaults=defaults, authorize_name=functools.partial(tokens.check_may_act_as, token))

    async def verify_token(secret: str) -> TokenRecord | None:
        return await anyio.to_thread.run_sync(tokens.verify, secret)

    in_flight = CallsInFlight()
    connections = ConnectionSessions(make_session, credential_of)
    mcp = create_server(parts, connections=connections, middleware=[in_flight])
    run_tools_on_worker_threads(mcp)
    security = transport_security(options)
    streamable = mcp.streamable_http_app(
        streamable_http_path=MCP_PATH,
        transport_security=security,
        max_request_body_size=options.max_body_bytes,
        host=options.host,
    )
    sse = _SseEndpoint(mcp, connections, security, options.max_body_bytes)

    async def healthz(request: Request) -> JSONResponse:
        report = await anyio.to_thread.run_sync(
            health_report, parts.store, time.monotonic() - started, bool(request.scope.get(TRUSTED_SCOPE_KEY))
        )
        report["calls_in_flight"] = in_flight.count
        return JSONResponse(report, status_code=200 if report["ok"] else 503)

    dashboard = DashboardParts(parts)

    async def drain_when_stopping() -> None:
        while not stopping():
            await anyio.sleep(0.1)
        log.info("shutting down: %d call(s) in flight", in_flight.count)
        if not await in_flight.wait_idle(options.shutdown_timeout_seconds):
            log.warning(
                "%d call(s) still running after %gs; closing anyway", in_flight.count, options.shutdown_timeout_seconds
            )
        await anyio.sleep(0.2)  # the last answers are on their way to the sockets
        AppStatus.should_exit = True  # now end the event streams, so their connections close

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # session_manager.run() enters the MCP lifespan (sweeper, inbox watcher) once for the process.
        async with mcp.session_manager.run(), anyio.create_task_group() as group:
            group.start_soon(drain_when_stopping)
            group.start_soon(dashboard.feed.run, stopping)
            yield
            group.cancel_scope.cancel()

    policy = guard_policy(options)
    return Starlette(
        routes=[
            Route(HEALTH_PATH, healthz, methods=["GET"]),
            Route(SSE_PATH, sse, methods=["GET"]),
            Mount(SSE_MESSAGES_PATH, app=sse.transport.handle_post_message),
            *dashboard_routes(dashboard, policy, security),
            Mount("/", app=streamable),  # MCP_PATH
        ],
        middleware=[Middleware(HttpGuard, policy=policy, verify_token=verify_token)],
        lifespan=lifespan,
    )


class _SseEndpoint:
    """GET /sse: one SSE connection, served like a Streamable HTTP session but on this stream (and
    without entering the MCP lifespan again: it is the process's, already running)."""

    def __init__(
        self, mcp: MCPServer, connections: ConnectionSessions, security: TransportSecuritySettings, max_body: int
    ) -> None:
        self.server = mcp._lowlevel_server
        self.connections = connections
        self.transport = SseServerTransport(
            SSE_MESSAGES_PATH, security_settings=security, max_request_body_size=max_body
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with self.transport.connect_sse(scope, receive, send) as (read_stream, write_stream):
                await serve_dual_era_loop(
                    self.server,
                    read_stream,
                    write_stream,
                    lifespan_state=self.connections,
                    init_options=self.server.create_initialization_options(),
                )
        except ValueError as error:
            if str(error) != "Request validation failed":
                raise
            # refused by the Host/Origin checks, which sent the response


def run_tools_on_worker_threads(mcp: MCPServer) -> None:
    """Run the tools in DIRECT_TOOLS on worker threads, as the SDK runs any synchronous tool.

    Their bodies are ``async def`` (so stdio runs them inline, where a thread hop would cost more
    than the database work) but never await anything, so each call can be driven to its end on a
    worker thread."""
    for name in DIRECT_TOOLS:
        tool = mcp._tool_manager.get_tool(name)
        if tool is None:  # pragma: no cover - DIRECT_TOOLS names registered tools
            raise RuntimeError(f"tool {name!r} is not registered")
        tool.fn, tool.is_async = _to_completion(tool.fn), False


def _to_completion(tool_fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(tool_fn)
    def run(**arguments: Any) -> Any:
        call = tool_fn(**arguments)
        try:
            call.send(None)
        except StopIteration as finished:
            return finished.value
        call.close()
        raise RuntimeError(f"tool {tool_fn.__name__} awaited something; tools in DIRECT_TOOLS must not")

    return run


def health_report(store: DataLayer, uptime_seconds: float, trusted: bool) -> dict[str, Any]:
    """Whether the DataLayer answers, its kind, schema version and search modes; where it is, for
    callers allowed to see it (authenticated, or on a server where tokens are optional)."""
    datalayer: dict[str, Any] = {"kind": _datalayer_kind(store)}
    if trusted:
        datalayer["location"] = without_credentials(store.location)
    report: dict[str, Any] = {"ok": True, "version": __version__, "uptime_seconds": round(uptime_seconds, 1)}
    try:
        report["schema_version"] = store.schema_version()
        datalayer.update(_capabilities(store))
        datalayer["reachable"] = True
    except StoreError as error:
        report["ok"] = False
        datalayer["reachable"] = False
        if trusted:
            datalayer["error"] = without_credentials(str(error))
    report["datalayer"] = datalayer
    return report


def _datalayer_kind(store: DataLayer) -> str:
    kind = getattr(store, "kind", None)
    if isinstance(kind, str):
        return kind
    return "sqlite" if isinstance(store, SQLiteDataLayer) else type(store).__name__


def _capabilities(store: DataLayer) -> dict[str, str]:
    """The engine and its search modes, as the store describes them (``features()``); else whether
    search uses a native full-text index ('fts5') or scans."""
    features = getattr(store, "features", None)
    if callable(features):
        return dict(features().summary())
    return {"full_text_search": "fts5" if has_fts(store) else "scan"}


def without_credentials(text: str) -> str:
    """A location or message with any URL's user, password and query (auth tokens) removed."""
    return " ".join(_url_without_credentials(word) if "://" in word else word for word in text.split(" "))


def _url_without_credentials(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def serve_http(
    parts: ServerParts,
    options: HttpOptions,
    *,
    log_level: str = "warning",
    build: Callable[..., Starlette] = build_http_app,
) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully and return (the caller closes
    the DataLayer). Returns normally after a signal, so the process exits with status 0."""
    import uvicorn

    server: uvicorn.Server | None = None
    app = build(parts, options, stopping=lambda: server is not None and server.should_exit)
    AppStatus.enable_automatic_graceful_drain = False  # the drain closes the streams, after the calls
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        log_level=log_level,
        timeout_graceful_shutdown=int(options.shutdown_timeout_seconds) + 5,
        lifespan="on",
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    if not is_loopback(options.host) and not options.allowed_hosts:
        log.warning("Host/Origin checks are off; pass --allowed-host NAME (the name clients use) to turn them on")

    def stopped(signum: int, _: FrameType | None) -> None:
        log.info("stopped by %s", signal.Signals(signum).name)

    # uvicorn handles the signals while it serves and raises them again afterwards: these
    # handlers receive them then, so a graceful stop is a normal return (exit status 0).
    previous = {sig: signal.signal(sig, stopped) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
