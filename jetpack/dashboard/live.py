"""The live feed: the events table pushed to every dashboard over the WebSocket ``/ws``.

**One reader per process.** ``EventFeed`` polls the table for rows after the newest it has seen
(an indexed range read) and hands each batch, encoded to JSON once, to every connected client:
the database sees the same load with one dashboard or a hundred, and the agents' calls do not
compete with a query per client. Each batch carries the current cards of the tasks its events
touched (read once, in the same tick), so a page updates its board without asking for them. The
poll runs every ``interval`` seconds while anyone is connected, less often when no one is (it still
advances, so it never starts from a stale point).

**Resume.** A client says ``{"type": "hello", "cursor": N}``; it receives every event with an id
above N, once, in order, then the live batches. It subscribes *before* reading its backlog, and
drops from live batches what the backlog already covered, so nothing falls between the two. Event
ids grow in commit order (writes are serialised), so "every id above N" is exactly "what happened
since". A client that cannot keep up is closed (code 1013) and resumes from its cursor.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from jetpack.dashboard.cards import cards
from jetpack.store import DataLayer, Row

log = logging.getLogger(__name__)

PAGE = 500  # events per read and per message
BACKLOG_LIMIT = 100_000  # a client further behind than this reloads instead (its cursor is too old)
CLIENT_BUFFER = 64  # batches queued for a client before it counts as too slow
CLOSE_TOKEN = 4401  # a token is needed (or was refused)
CLOSE_TOO_SLOW = 1013  # "try again later": reconnect with the cursor

EVENT_COLUMNS = "id, at, actor, kind, task_id, before_state, after_state, note"


def event_json(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "at": row["at"],
        "actor": row["actor"],
        "kind": row["kind"],
        "task_id": row["task_id"],
        "before": row["before_state"],
        "after": row["after_state"],
        "note": row["note"],
    }


def events_after(store: DataLayer, cursor: int, limit: int = PAGE) -> list[dict[str, Any]]:
    rows = store.query(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE id > :cursor ORDER BY id LIMIT :limit",
        {"cursor": cursor, "limit": limit},
    )
    return [event_json(r) for r in rows]


def newest_event_id(store: DataLayer) -> int:
    rows = store.query("SELECT coalesce(max(id), 0) AS id FROM events")
    return int(rows[0]["id"])


@dataclass(frozen=True)
class Batch:
    events: list[dict[str, Any]]
    touched: dict[str, Any]  # {"cards": the current cards of the tasks these events touched, "gone": ids}
    text: str  # the "events" message, encoded once for every client

    @property
    def last(self) -> int:
        return int(self.events[-1]["id"])

    @classmethod
    def of(cls, events: list[dict[str, Any]], touched: dict[str, Any]) -> Batch:
        return cls(events, touched, _events_message(events, touched))


def _events_message(events: list[dict[str, Any]], touched: dict[str, Any]) -> str:
    message = {"type": "events", "events": events, "cursor": events[-1]["id"], **touched}
    return json.dumps(message, separators=(",", ":"))


def read_batch(store: DataLayer, cursor: int, limit: int = PAGE) -> Batch | None:
    """The events after ``cursor`` and the cards of the tasks they touched: a page updates its
    board from the message alone, so twenty pages cost one read, not twenty."""
    events = events_after(store, cursor, limit)
    if not events:
        return None
    ids = list(dict.fromkeys(e["task_id"] for e in events if e["task_id"]))
    found = cards(store, ids) if ids else {"cards": [], "missing": []}
    return Batch.of(events, {"cards": found["cards"], "gone": found["missing"]})


RunRead = Callable[..., Awaitable[Any]]  # runs a blocking read off the event loop: run(fn, *args)


@dataclass
class EventFeed:
    store: DataLayer
    run_read: RunRead
    interval: float = 0.1
    idle_interval: float = 1.0
    latest: int | None = None
    _clients: set[MemoryObjectSendStream[Batch]] = field(default_factory=set)
    polls: int = 0  # reads made (the dashboard benchmark and tests look at it)

    @property
    def client_count(self) -> int:
        return len(self._clients)

    async def run(self, stopping: Callable[[], bool] = lambda: False) -> None:
        """Poll until cancelled or ``stopping()``, then close every client's stream (each closes its
        socket; its page reconnects, to this server or the next, with its cursor)."""
        self.latest = await self.run_read(newest_event_id, self.store)
        try:
            await self._poll_until(stopping)
        finally:
            for client in list(self._clients):
                self._drop(client)

    async def _poll_until(self, stopping: Callable[[], bool]) -> None:
        while not stopping():
            try:
                got = await self.poll()
            except Exception:  # the DataLayer is away for a moment: keep the clients, try again
                log.warning("dashboard feed: reading events failed; retrying", exc_info=True)
                got = 0
            if got < PAGE:
                await anyio.sleep(self.interval if self._clients else self.idle_interval)

    async def poll(self) -> int:
        assert self.latest is not None
        self.polls += 1
        batch = await self.run_read(read_batch, self.store, self.latest)
        if batch is None:
            return 0
        self.latest = batch.last
        for client in list(self._clients):
            try:
                client.send_nowait(batch)
            except anyio.WouldBlock:  # too slow: it will be closed and resume from its cursor
                self._drop(client)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                self._drop(client)
        return len(batch.events)

    def subscribe(self) -> Subscription:
        send, receive = anyio.create_memory_object_stream[Batch](CLIENT_BUFFER)
        self._clients.add(send)
        return Subscription(send, receive)

    def unsubscribe(self, subscription: Subscription) -> None:
        self._drop(subscription.send)
        subscription.receive.close()

    def _drop(self, client: MemoryObjectSendStream[Batch]) -> None:
        self._clients.discard(client)
        client.close()


@dataclass(frozen=True)
class Subscription:
    send: MemoryObjectSendStream[Batch]
    receive: MemoryObjectReceiveStream[Batch]


TokenCheck = Callable[[WebSocket, str | None], Awaitable[str | None]]  # -> why refused, or None


async def serve_socket(websocket: WebSocket, feed: EventFeed, check_token: TokenCheck) -> None:
    """One dashboard's connection: hello, backlog after its cursor, then the live batches."""
    await websocket.accept()
    try:
        hello = await _hello(websocket)
        if hello is None:
            return
        refused = await check_token(websocket, hello.get("token"))
        if refused is not None:
            await websocket.close(CLOSE_TOKEN, refused[:120])
            return
        live = feed.subscribe()
        try:
            await _stream(websocket, feed, live.receive, hello.get("cursor"))
        finally:
            feed.unsubscribe(live)
    except WebSocketDisconnect:
        return
    finally:
        if websocket.application_state is not WebSocketState.DISCONNECTED:
            await _close_quietly(websocket)


async def _hello(websocket: WebSocket) -> dict[str, Any] | None:
    with anyio.move_on_after(10):
        try:
            hello = json.loads(await websocket.receive_text())
        except ValueError:
            hello = None
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            await websocket.close(1008, 'send {"type": "hello", "cursor": N or null, "token": ... } first')
            return None
        cursor = hello.get("cursor")
        if cursor is not None and (not isinstance(cursor, int) or isinstance(cursor, bool) or cursor < 0):
            await websocket.close(1008, "cursor must be a non-negative event id, or null for 'from now'")
            return None
        return hello
    await websocket.close(1008, "no hello within 10 s")
    return None


async def _stream(
    websocket: WebSocket, feed: EventFeed, live: MemoryObjectReceiveStream[Batch], cursor: int | None
) -> None:
    newest = await feed.run_read(newest_event_id, feed.store)
    if cursor is None or cursor > newest:
        cursor = newest
    elif newest - cursor > BACKLOG_LIMIT:
        await websocket.close(1008, f"cursor {cursor} is over {BACKLOG_LIMIT} events behind; reload the page")
        return
    await websocket.send_text(json.dumps({"type": "welcome", "cursor": cursor}))
    sent = cursor
    while True:  # the backlog, page by page
        page = await feed.run_read(read_batch, feed.store, sent)
        if page is None:
            break
        await websocket.send_text(page.text)
        sent = page.last
    fell_behind = False
    async with anyio.create_task_group() as group:
        group.start_soon(_watch_close, websocket, group.cancel_scope)
        async for batch in live:
            if batch.last <= sent:
                continue
            if batch.events[0]["id"] > sent:
                await websocket.send_text(batch.text)
            else:
                unseen = [e for e in batch.events if e["id"] > sent]
                await websocket.send_text(_events_message(unseen, batch.touched))
            sent = batch.last
        fell_behind = True  # the feed dropped this client (its buffer was full) or is shutting down
        group.cancel_scope.cancel()
    if fell_behind:
        await websocket.close(CLOSE_TOO_SLOW, "fell behind; reconnect with your cursor")


async def _watch_close(websocket: WebSocket, scope: anyio.CancelScope) -> None:
    """Clients say nothing after hello; reading notices when they go away."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
    except (WebSocketDisconnect, RuntimeError):
        pass
    scope.cancel()


async def _close_quietly(websocket: WebSocket) -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
        await websocket.close()
