"""The dashboard's routes, served at ``/`` of ``jetpack serve --http`` beside the MCP endpoint, or
alone by ``jetpack dashboard`` (no MCP endpoint at all).

    /                 the page (static files ship inside the package: no build step)
    /static/...       its script and style sheet
    /api/...          JSON reads and the writes a person makes (jetpack/dashboard/api.py)
    /ws               the live event feed (jetpack/dashboard/live.py)

Who may do what is the MCP endpoint's rule: on loopback no token is needed; bound beyond it (or
behind a proxy) every ``/api`` request and the socket need a bearer token, and the page asks for
one. The page itself and its static files are public: they hold no data. Host and Origin are
checked as for MCP (DNS rebinding), and a write must come from this dashboard's own page.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import cast

import anyio
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from jetpack.auth import TokenRecord, TokenRegistry
from jetpack.dashboard.api import Dashboard, api_routes
from jetpack.dashboard.live import EventFeed, serve_socket
from jetpack.server.app import ServerParts
from jetpack.server.http_guard import GuardPolicy, HttpGuard, why_token_needed
from jetpack.server.http_options import HEALTH_PATH, HttpOptions, transport_security

log = logging.getLogger(__name__)

STATIC = "/static"
PAGE_PATHS = frozenset({"/", "/favicon.ico"})


def static_folder() -> Path:
    return Path(str(resources.files("jetpack.dashboard") / "static"))


class DashboardParts:
    """The dashboard of one server process: its handlers' context and the live feed."""

    def __init__(self, parts: ServerParts, *, poll_interval: float = 0.1) -> None:
        self.dashboard = Dashboard(
            settings=parts.settings,
            store=parts.store,
            queue=parts.queue,
            mail=parts.mail,
            reservations=parts.reservations,
            memory=parts.memory,
        )
        self.feed = EventFeed(parts.store, self.dashboard.run, interval=poll_interval)
        self.tokens = TokenRegistry(parts.store)


def dashboard_routes(dash: DashboardParts, policy: GuardPolicy, security: TransportSecuritySettings) -> list[BaseRoute]:
    """Every route of the dashboard; the caller puts HttpGuard (tokens, rate and body limits) in front."""
    checks = TransportSecurityMiddleware(security)
    folder = static_folder()
    dash.dashboard.token_required_because = policy.why_required if policy.require_token else None

    async def page(request: Request) -> Response:
        if request.url.path == "/favicon.ico":
            return Response(status_code=204)
        return FileResponse(folder / "index.html", headers={"Cache-Control": "no-cache"})

    async def check_socket(websocket: WebSocket, token: str | None) -> str | None:
        refused = await checks.validate_request(cast(Request, websocket))
        if refused is not None:
            return "this page's address or origin is not one this server answers to (see --allowed-host)"
        if token:
            record = await dash.dashboard.run(dash.tokens.verify, token)
            return None if record is not None else "the token is unknown or has been revoked"
        return why_token_needed(policy, websocket.headers)

    async def socket(websocket: WebSocket) -> None:
        await serve_socket(websocket, dash.feed, check_socket)

    return [
        Route("/", page, methods=["GET"]),
        Route("/favicon.ico", page, methods=["GET"]),
        Mount(STATIC, app=StaticFiles(directory=folder), name="static"),
        *_checked(api_routes(dash.dashboard), checks),
        Mount("/api", app=_api_not_found),
        WebSocketRoute("/ws", socket),
    ]


def _checked(routes: list[Route], checks: TransportSecurityMiddleware) -> list[Route]:
    """The API routes behind the Host/Origin checks (DNS rebinding protection)."""
    wrapped = []
    for route in routes:
        endpoint = cast(Callable[[Request], Awaitable[Response]], route.endpoint)
        wrapped.append(Route(route.path, _with_checks(endpoint, checks), methods=list(route.methods or ())))
    return wrapped


def _with_checks(
    endpoint: Callable[[Request], Awaitable[Response]], checks: TransportSecurityMiddleware
) -> Callable[[Request], Awaitable[Response]]:
    async def checked(request: Request) -> Response:
        refused = await checks.validate_request(request)
        if refused is None:
            return await endpoint(request)
        if refused.status_code == 421:
            problem = (
                f"this server does not answer to the name {request.headers.get('host', '')!r}; "
                "start it with --allowed-host NAME for each name the page is reached by"
            )
        else:
            problem = "this request came from another site's page; use the dashboard this server serves"
        return JSONResponse({"error": "not_permitted", "message": problem}, status_code=refused.status_code)

    return checked


def guard_policy(options: HttpOptions) -> GuardPolicy:
    """What HttpGuard enforces for ``options``; the health check, the page and its static files are
    open to all (they hold no data)."""
    why = options.token_required_because
    return GuardPolicy(
        require_token=why is not None,
        why_required=why or "",
        max_body_bytes=options.max_body_bytes,
        rate_per_second=options.rate_limit_per_second,
        rate_burst=options.rate_limit_burst,
        public_paths=PAGE_PATHS | {HEALTH_PATH},
        public_prefixes=(STATIC + "/",),
    )


def build_dashboard_app(
    parts: ServerParts, options: HttpOptions, *, stopping: Callable[[], bool] = lambda: False
) -> Starlette:
    """``jetpack dashboard``: the dashboard alone, without an MCP endpoint."""
    dash = DashboardParts(parts)
    policy = guard_policy(options)

    async def verify_token(secret: str) -> TokenRecord | None:
        return await dash.dashboard.run(dash.tokens.verify, secret)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as group:
            group.start_soon(dash.feed.run, stopping)
            yield
            group.cancel_scope.cancel()

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "dashboard_clients": dash.feed.client_count})

    return Starlette(
        routes=[
            Route(HEALTH_PATH, healthz, methods=["GET"]),
            *dashboard_routes(dash, policy, transport_security(options)),
        ],
        middleware=[
            Middleware(
                HttpGuard,
                policy=policy,
                verify_token=verify_token,
            )
        ],
        lifespan=lifespan,
    )


async def _api_not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """Unknown ``/api`` paths answer JSON (and never fall through to the MCP app)."""
    message = f"no dashboard API at {scope['path']}; see docs/dashboard.md for the API"
    await JSONResponse({"error": "not_found", "message": message}, status_code=404)(scope, receive, send)
