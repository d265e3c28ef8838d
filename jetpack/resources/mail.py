"""The inbox resource, ``jetpack://inbox/{agent}``, and its push: ``resources/updated`` on new mail.

Mail can arrive from any process, so each server process runs one watcher that polls the
deliveries table (an index range read, twice a second) and, for each inbox that received mail,
notifies the sessions that subscribed to it (``resources/subscribe``, today's clients) and
publishes on the server's subscription bus (``subscriptions/listen``, the 2026 protocol).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.server.subscriptions import ResourceUpdated, SubscriptionBus
from mcp.types import EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams

from jetpack import mail
from jetpack.errors import JetpackError
from jetpack.store import StoreError
from jetpack.tasks.model import compact

log = logging.getLogger(__name__)

INBOX_PREFIX = "jetpack://inbox/"
POLL_SECONDS = 0.5


def inbox_uri(agent: str) -> str:
    return f"{INBOX_PREFIX}{agent}"


class InboxWatcher:
    """Notifies subscribers when an agent's inbox receives mail, whoever sent it."""

    def __init__(self, ctx: mail.MailContext, bus: SubscriptionBus | None = None) -> None:
        self._ctx = ctx
        self._bus = bus
        self._subscribers: dict[str, list[Any]] = {}  # uri -> handshake-era sessions
        self._last_delivery: int | None = None

    def subscribe(self, uri: str, session: Any) -> None:
        if self._last_delivery is None:
            self._last_delivery = self._max_delivery()  # mail from now on is news
        sessions = self._subscribers.setdefault(uri, [])
        if session not in sessions:
            sessions.append(session)

    def unsubscribe(self, uri: str, session: Any) -> None:
        sessions = self._subscribers.get(uri, [])
        if session in sessions:
            sessions.remove(session)

    async def run(self) -> None:
        while True:
            await anyio.sleep(POLL_SECONDS)
            try:
                await self.check_once()
            except StoreError:
                log.warning("inbox watcher could not read deliveries; will retry", exc_info=True)

    def _listened_to(self) -> bool:
        listeners = getattr(self._bus, "_listeners", None)  # the SDK's in-memory bus; others: assume yes
        return any(self._subscribers.values()) or listeners is None or bool(listeners)

    async def check_once(self) -> list[str]:
        """Notify about inboxes that received mail since the last check; return their URIs."""
        if not self._listened_to():
            self._last_delivery = None  # nobody listens: skip the read; start afresh when someone does
            return []
        if self._last_delivery is None:
            self._last_delivery = self._max_delivery()
            return []
        rows = self._ctx.store.query(
            "SELECT recipient, max(id) AS last FROM deliveries WHERE id > :since GROUP BY recipient",
            {"since": self._last_delivery},
        )
        if not rows:
            return []
        self._last_delivery = max(self._last_delivery, *(r["last"] for r in rows))
        uris = [inbox_uri(r["recipient"]) for r in rows]
        for uri in uris:
            if self._bus is not None:
                await self._bus.publish(ResourceUpdated(uri=uri))
            for session in list(self._subscribers.get(uri, [])):
                try:
                    await session.send_resource_updated(uri)
                except Exception:  # a session that went away: forget it
                    log.debug("dropping subscriber of %s", uri, exc_info=True)
                    self.unsubscribe(uri, session)
        return uris

    def _max_delivery(self) -> int:
        return int(self._ctx.store.query("SELECT coalesce(max(id), 0) AS n FROM deliveries")[0]["n"])


def register_mail_resources(mcp: MCPServer, ctx: mail.MailContext, watcher: InboxWatcher) -> None:
    @mcp.resource("jetpack://inbox/{agent}", mime_type="application/json", title="Inbox")
    async def inbox_resource(agent: str) -> str:
        """An agent's unread mail, newest first (reading it moves no cursor). Subscribe to be told
        (resources/updated) when new mail arrives."""
        try:
            page = mail.fetch_inbox(ctx, agent, limit=50, unread_only=True)
        except JetpackError as error:
            raise ResourceError(str(error)) from None
        return json.dumps(compact(page), separators=(",", ":"))

    async def on_subscribe(request: ServerRequestContext[Any], params: SubscribeRequestParams) -> EmptyResult:
        if str(params.uri).startswith(INBOX_PREFIX):
            watcher.subscribe(str(params.uri), request.session)
        return EmptyResult()

    async def on_unsubscribe(request: ServerRequestContext[Any], params: UnsubscribeRequestParams) -> EmptyResult:
        watcher.unsubscribe(str(params.uri), request.session)
        return EmptyResult()

    lowlevel = mcp._lowlevel_server
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, on_subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, on_unsubscribe)
