"""What every HTTP request passes before it reaches MCP: its bearer token, the rate limit, the body limit.

- **Tokens.** A request without ``Authorization`` is refused (401) when the server requires
  tokens (bound beyond loopback, served under a public name, or ``server.require_token``) or
  when it came through a proxy; on plain loopback it may come without one. A token that is
  presented is always verified: unknown and revoked tokens get 401 everywhere. The verified
  token rides in the ASGI scope, so the MCP layer knows which agent a connection may act as,
  and in the shape the SDK reads (``user``), so a session can only be used with the credential
  that opened it.
- **Rate limit.** A token bucket per token (per client address for anonymous loopback clients);
  an empty bucket answers 429 with ``Retry-After``.
- **Body limit.** A body past ``max_body_bytes`` answers 413, whether it declares its length or
  streams it.

Every refusal is a small JSON body saying what is wrong and what to do. No secret is ever logged.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jetpack.auth import TokenRecord

log = logging.getLogger(__name__)

TOKEN_SCOPE_KEY = "jetpack.token"
TRUSTED_SCOPE_KEY = "jetpack.trusted"  # the caller may see details (authenticated, or tokens optional)

VerifyToken = Callable[[str], Awaitable[TokenRecord | None]]

_PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip")


@dataclass(frozen=True)
class GuardPolicy:
    require_token: bool
    why_required: str  # e.g. "it listens on 0.0.0.0, beyond loopback"
    max_body_bytes: int
    rate_per_second: float  # 0: no rate limit
    rate_burst: int
    public_paths: frozenset[str] = frozenset()  # served without a token (health checks)
    public_prefixes: tuple[str, ...] = ()  # likewise, every path under these (the dashboard's static files)

    def is_public(self, path: str) -> bool:
        return path in self.public_paths or path.startswith(self.public_prefixes)


def token_of(scope: Any) -> TokenRecord | None:
    """The verified token of a request (a Starlette Request or an ASGI scope), if it had one."""
    scope = getattr(scope, "scope", scope)
    return scope.get(TOKEN_SCOPE_KEY) if isinstance(scope, dict) else None


def credential_of(request: Any) -> str:
    """Who is calling, without secrets: the token's principal, else the client's address."""
    token = token_of(request)
    if token is not None:
        return token.principal
    scope = getattr(request, "scope", request)
    client = scope.get("client") if isinstance(scope, dict) else None
    return f"anonymous-{client[0]}" if client else "anonymous"


@dataclass
class TokenBuckets:
    """A token bucket per key: ``rate`` requests a second on average, bursts up to ``burst``."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (level, at)

    def take(self, key: str) -> float:
        """0 when the request may go ahead; otherwise the seconds until one would be allowed."""
        now = self.clock()
        level, at = self._buckets.get(key, (float(self.burst), now))
        level = min(float(self.burst), level + (now - at) * self.rate)
        if level >= 1:
            self._buckets[key] = (level - 1, now)
            if len(self._buckets) > 10_000:
                self._forget_full(now)
            return 0.0
        self._buckets[key] = (level, now)
        return (1 - level) / self.rate

    def _forget_full(self, now: float) -> None:
        full = [k for k, (level, at) in self._buckets.items() if level + (now - at) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]


def why_token_needed(policy: GuardPolicy, headers: Headers) -> str | None:
    """Why a request without a token is refused, or None when it may come without one."""
    if policy.require_token:
        return policy.why_required
    # A proxy in front of a loopback server makes every request look local.
    forwarded = next((h for h in _PROXY_HEADERS if h in headers), None)
    return f"this request came through a proxy (it carries {forwarded})" if forwarded else None


class HttpGuard:
    """ASGI middleware in front of every route: token, rate limit, body limit (in that order)."""

    def __init__(self, app: ASGIApp, *, policy: GuardPolicy, verify_token: VerifyToken) -> None:
        self.app = app
        self.policy = policy
        self.verify_token = verify_token
        self.buckets = TokenBuckets(policy.rate_per_second, policy.rate_burst) if policy.rate_per_second else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        authorization = headers.get("authorization")
        token: TokenRecord | None = None
        if authorization is not None:
            scheme, _, secret = authorization.partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                await self._unauthorized(scope, receive, send, "the Authorization header must be 'Bearer <token>'")
                return
            token = await self.verify_token(secret.strip())
            if token is None:
                await self._unauthorized(scope, receive, send, "the bearer token is unknown or has been revoked")
                return
        elif not self.policy.is_public(scope["path"]) and (why := why_token_needed(self.policy, headers)):
            await self._unauthorized(scope, receive, send, f"this server requires a bearer token: {why}")
            return
        scope[TOKEN_SCOPE_KEY] = token
        scope[TRUSTED_SCOPE_KEY] = token is not None or not why_token_needed(self.policy, headers)
        if token is not None:
            # The shape the SDK's transports compare to bind a session to the credential that opened it.
            principal = AccessToken(token=token.principal, client_id=token.principal, scopes=[], subject=token.agent)
            scope["user"] = AuthenticatedUser(principal)

        if self.buckets is not None:
            wait = self.buckets.take(credential_of(scope))
            if wait:
                await self._rate_limited(scope, receive, send, wait)
                return

        await self._within_body_limit(scope, receive, send, headers)

    async def _within_body_limit(self, scope: Scope, receive: Receive, send: Send, headers: Headers) -> None:
        """Read the body up to the limit (413 beyond it), then run the app on it."""
        limit = self.policy.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(scope, receive, send)
            return
        cached: deque[Message] = deque()
        size = 0
        while True:
            message = await receive()
            cached.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > limit:
                await self._too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(m.get("body", b"") for m in cached if m["type"] == "http.request")
        replay: deque[Message] = deque([{"type": "http.request", "body": body, "more_body": False}])
        replay.extend(m for m in cached if m["type"] != "http.request")

        async def replayed() -> Message:
            return replay.popleft() if replay else await receive()

        await self.app(scope, replayed, send)

    async def _unauthorized(self, scope: Scope, receive: Receive, send: Send, problem: str) -> None:
        log.info("refused %s %s from %s: %s", scope["method"], scope["path"], _client(scope), problem)
        message = (
            f"Unauthorized: {problem}. Send the header 'Authorization: Bearer <token>' with a token made on the "
            "server's machine by `jetpack token create --agent NAME` (it prints the token once; "
            "`jetpack token list` shows which tokens are active)."
        )
        response = JSONResponse(
            {"error": "unauthorized", "message": message},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="jetpack"'},
        )
        await response(scope, receive, send)

    async def _rate_limited(self, scope: Scope, receive: Receive, send: Send, wait: float) -> None:
        seconds = max(1, math.ceil(wait))
        log.info("rate limited %s %s from %s", scope["method"], scope["path"], credential_of(scope))
        message = (
            f"Too many requests: this server allows {self.policy.rate_per_second:g} requests a second per token "
            f"(bursts of {self.policy.rate_burst}; server.rate_limit_per_second). Retry after {seconds} s."
        )
        response = JSONResponse(
            {"error": "rate_limited", "message": message, "retry_after_seconds": seconds},
            status_code=429,
            headers={"Retry-After": str(seconds)},
        )
        await response(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.policy.max_body_bytes
        log.info("refused %s %s from %s: body over %d bytes", scope["method"], scope["path"], _client(scope), limit)
        message = (
            f"Request body too large: this server accepts at most {limit} bytes (server.max_body_bytes). "
            "Split the call (e.g. create_tasks in smaller batches)."
        )
        response = JSONResponse({"error": "request_too_large", "message": message}, status_code=413)
        await response(scope, receive, send)


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"
