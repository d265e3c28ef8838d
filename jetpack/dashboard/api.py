"""The dashboard's JSON API (``/api/...``): read models over the DataLayer and the few writes a
person makes from the page, each through the same services the MCP tools and the CLI use.

Every handler runs its database work on a worker thread taken from the dashboard's own small pool
(``Dashboard.limiter``): however many pages are open, they can occupy at most that many threads,
so the agents' tool calls — which run on the server's general pool — never queue behind them.
Caller errors answer 4xx with ``{"error", "message"}``, as the MCP tools word them.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import anyio
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jetpack import __version__
from jetpack import tasks as task_queue
from jetpack.actor import Actor
from jetpack.agents import AgentRegistry, check_agent_name
from jetpack.agents.health import MAX_AGENTS, LifecycleContext, list_agents
from jetpack.config import Settings
from jetpack.dashboard import layout, metrics, tree
from jetpack.dashboard.cards import CARD_COLUMNS, LEAF, card_json, card_of, cards
from jetpack.dashboard.live import EVENT_COLUMNS, event_json, newest_event_id
from jetpack.dashboard.moves import move_task, parse_state, reprioritise
from jetpack.errors import Conflict, InvalidInput, JetpackError, NotFound, NotPermitted
from jetpack.mail import MailContext
from jetpack.mail.inbox import get_thread, message_from_row
from jetpack.mail.messages import send_mail
from jetpack.mail.model import NewMessage, Sender, SenderKind
from jetpack.mail.search import search_mail
from jetpack.memory.context import MemoryContext
from jetpack.quality.service import QualityContext, latest_baseline, recent_snapshots
from jetpack.reservations.patterns import patterns_overlap
from jetpack.reservations.service import ReservationContext, active_reservations, release_files
from jetpack.server.http_guard import token_of
from jetpack.store import DataLayer, Row, StoreError
from jetpack.tasks import QueueContext
from jetpack.tasks.ids import check_task_id
from jetpack.tasks.model import describe_validation_error

T = TypeVar("T")

FINAL_SHOWN = 200  # newest cards shown per finished column; the rest are counted
FINISHED_STATES = ("done", "failed", "cancelled")
MAX_IDS = 500


@dataclass
class Dashboard:
    """What the dashboard's handlers share: the services' contexts and the thread pool for reads."""

    settings: Settings
    store: DataLayer
    queue: QueueContext
    mail: MailContext
    reservations: ReservationContext
    memory: MemoryContext
    threads: int = 2
    # Why every /api request needs a token (bound beyond loopback), or None; a request through a
    # proxy needs one even when this is None.
    token_required_because: str | None = None
    limiter: anyio.CapacityLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = anyio.CapacityLimiter(self.threads)
        self.lifecycle = LifecycleContext(queue=self.queue, settings=self.settings.agents)
        self.quality = QualityContext.for_settings(self.settings, self.store, self.queue.clock)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(partial(fn, *args), limiter=self.limiter)


def board(store: DataLayer) -> dict[str, Any]:
    """Every leaf task as a card; of the finished ones the newest FINAL_SHOWN per state."""
    cursor = newest_event_id(store)  # before the read: events after it may already show; never fewer
    rows = store.query(f"SELECT {CARD_COLUMNS} FROM tasks t WHERE {LEAF} ORDER BY priority, created_at, id")
    cards: list[Row] = []
    finished: dict[str, list[Row]] = {state: [] for state in FINISHED_STATES}
    for row in rows:
        (finished.get(row["state"], cards)).append(row)
    hidden = {}
    for state, done in finished.items():
        done.sort(key=lambda r: r["updated_at"], reverse=True)
        cards.extend(done[:FINAL_SHOWN])
        if len(done) > FINAL_SHOWN:
            hidden[state] = len(done) - FINAL_SHOWN
    return {"cursor": cursor, "cards": [card_json(r) for r in cards], "hidden": hidden}


def overview(dash: Dashboard, actor: str) -> dict[str, Any]:
    counts = task_queue.count_by_state(dash.queue)
    agents = list_agents(dash.lifecycle, limit=MAX_AGENTS)
    return {
        "version": __version__,
        "project": str(dash.settings.project_dir),
        "counts": counts,
        "agents": agents.counts,
        "cursor": newest_event_id(dash.store),
        "actor": actor,
        "auth": {
            "read_requires_token": dash.token_required_because is not None,
            "write_requires_token": dash.token_required_because is not None,
            "why": dash.token_required_because,
        },
    }


def agents_view(dash: Dashboard) -> dict[str, Any]:
    listing = list_agents(dash.lifecycle, limit=MAX_AGENTS)
    hour_ago = dash.queue.now() - 3_600_000
    done = {
        r["actor"]: r["n"]
        for r in dash.store.query(
            "SELECT actor, count(*) AS n FROM events WHERE kind = 'completed' AND at >= :since GROUP BY actor",
            {"since": hour_ago},
        )
    }
    recent: dict[str, list[dict[str, Any]]] = {}
    for row in dash.store.query(
        "SELECT id, at, actor, kind, task_id, before_state, after_state, note FROM events ORDER BY id DESC LIMIT 2000"
    ):
        mine = recent.setdefault(row["actor"], [])
        if len(mine) < 10:
            mine.append(event_json(row))
    rows = []
    for agent in listing.agents:
        item = agent.model_dump(mode="json")
        item["done_last_hour"] = done.get(agent.name, 0)
        item["recent_events"] = recent.get(agent.name, [])
        rows.append(item)
    return {"agents": rows, "counts": listing.counts}


def events_view(store: DataLayer, after: int, limit: int, task_id: str | None, agent: str | None) -> dict[str, Any]:
    rows = store.query(
        f"SELECT {EVENT_COLUMNS} FROM events "
        "WHERE id > :after AND (:task IS NULL OR task_id = :task) AND (:agent IS NULL OR actor = :agent) "
        "ORDER BY id LIMIT :limit",
        {"after": after, "task": task_id, "agent": agent, "limit": limit},
    )
    return {"events": [event_json(r) for r in rows]}


def threads_view(store: DataLayer, limit: int) -> dict[str, Any]:
    rows = store.query(
        """SELECT m.thread_id, count(*) AS count, max(m.created_at) AS last_at, max(m.task_id) AS task_id,
                  min(m.id) AS first_id, group_concat(DISTINCT m.sender) AS senders,
                  max(CASE m.importance WHEN 'urgent' THEN 3 WHEN 'high' THEN 2 WHEN 'normal' THEN 1 ELSE 0 END)
                      AS importance
        FROM messages m GROUP BY m.thread_id ORDER BY last_at DESC LIMIT :limit""",
        {"limit": limit},
    )
    subjects = {
        r["id"]: r["subject"]
        for r in store.query(
            "SELECT id, subject FROM messages WHERE id IN (SELECT value FROM json_each(:ids))",
            {"ids": json.dumps([r["first_id"] for r in rows])},
        )
    }
    names = ("low", "normal", "high", "urgent")
    return {
        "threads": [
            {
                "thread_id": r["thread_id"],
                "subject": subjects.get(r["first_id"], ""),
                "last_at": r["last_at"],
                "count": r["count"],
                "participants": sorted(set((r["senders"] or "").split(","))),
                "task_id": r["task_id"],
                "importance": names[r["importance"]],
            }
            for r in rows
        ]
    }


def reservations_view(ctx: ReservationContext) -> dict[str, Any]:
    """Active reservations, each with the others it overlaps (shared ones never conflict)."""
    active = active_reservations(ctx, limit=1000)
    views = []
    for item in active:
        clashes = [
            {"id": other.id, "agent": other.agent, "pattern": other.pattern}
            for other in active
            if other.agent != item.agent
            and not (item.shared and other.shared)
            and patterns_overlap(item.pattern, other.pattern)
        ]
        view = item.model_dump(mode="json")
        view["mode"] = "shared" if item.shared else "exclusive" if item.exclusive else "advisory"
        view["conflicts"] = clashes
        views.append(view)
    return {"reservations": views}


def release_reservation(ctx: ReservationContext, actor: str, reservation_id: int) -> dict[str, Any]:
    """An operator action: release someone's reservation on their behalf."""
    rows = ctx.store.query("SELECT agent, released_at FROM reservations WHERE id = :id", {"id": reservation_id})
    if not rows:
        raise NotFound(f"no reservation {reservation_id}; the reservations page lists the active ones")
    if rows[0]["released_at"] is not None:
        raise Conflict(f"reservation {reservation_id} was already released")
    released = release_files(ctx, rows[0]["agent"], ids=[reservation_id])
    return {"released": len(released), "holder": rows[0]["agent"], "by": actor}


def memory_view(memory: MemoryContext, query: str, layer: str, limit: int) -> dict[str, Any]:
    from jetpack.memory.model import Layer
    from jetpack.memory.recall import recall

    if not query.strip():
        raise InvalidInput("type some words to search memory for")
    if layer != "all" and layer not in {item.value for item in Layer}:
        raise InvalidInput(f"layer must be all, episodic, working or procedural, not {layer!r}")
    layers = None if layer == "all" else [Layer(layer)]
    hits = recall(memory, query, layers=layers, k=limit)
    return {"hits": [{**hit.model_dump(mode="json"), "content": hit.snippet} for hit in hits]}


def quality_view(dash: Dashboard) -> dict[str, Any]:
    baseline = latest_baseline(dash.quality)
    return {
        "configured": dash.quality.configured(),
        "baseline": baseline.model_dump(mode="json") if baseline else None,
        "snapshots": [s.model_dump(mode="json") for s in recent_snapshots(dash.quality, limit=50)],
    }


def leaderboard_view(store: DataLayer) -> dict[str, Any]:
    return {"rows": metrics.leaderboard(store)}


# -- HTTP plumbing -----------------------------------------------------------------------------

ERRORS = {  # caller errors: (HTTP status, code)
    InvalidInput: (400, "invalid_input"),
    NotPermitted: (403, "not_permitted"),
    NotFound: (404, "not_found"),
    Conflict: (409, "conflict"),
}


def error_response(error: Exception) -> JSONResponse:
    status, code = next((v for k, v in ERRORS.items() if isinstance(error, k)), (409, "refused"))
    if isinstance(error, JetpackError):
        return JSONResponse({"error": code, "message": str(error)}, status_code=status)
    message = f"the database did not answer: {error}; try again in a moment"
    return JSONResponse({"error": "storage", "message": message}, status_code=503)


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number, not {raw[:40]!r}") from None
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}, not {value}")
    return value


def acting(request: Request, default_name: str) -> Actor:
    """Who a write acts as: the token's agent when one was presented, else the person at this
    machine (the page is on loopback, where tokens are optional)."""
    token = token_of(request)
    if token is not None:
        return Actor(check_agent_name(token.agent or token.principal))
    return Actor(default_name)


def default_actor_name() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "someone"
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in user)[:40] or "someone"
    return f"web-{name}"


async def json_body(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise InvalidInput("send the body as JSON with 'Content-Type: application/json'")
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as error:
        raise InvalidInput(f"the body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


def same_origin(request: Request) -> bool:
    """Writes from a browser must come from this dashboard's own page (no cross-site requests)."""
    origin = request.headers.get("origin")
    if origin is None:  # not a browser (curl, scripts, tests)
        return True
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


def api_routes(dash: Dashboard) -> list[Route]:
    actor_name = default_actor_name()

    def read(fn: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                return JSONResponse(await fn(request))
            except (JetpackError, StoreError) as error:
                return error_response(error)

        return endpoint

    def write(fn: Callable[[Request, Actor, dict[str, Any]], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            if not same_origin(request):
                problem = "this write came from another site's page; use the dashboard served by this server"
                return JSONResponse({"error": "not_permitted", "message": problem}, status_code=403)
            try:
                body = await json_body(request)
                return JSONResponse(await fn(request, acting(request, actor_name), body))
            except (JetpackError, StoreError) as error:
                return error_response(error)

        return endpoint

    async def get_overview(request: Request) -> Any:
        return await dash.run(overview, dash, acting(request, actor_name).name)

    async def get_board(request: Request) -> Any:
        return await dash.run(board, dash.store)

    async def get_cards(request: Request) -> Any:
        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        if len(ids) > MAX_IDS:
            raise InvalidInput(f"ask for at most {MAX_IDS} cards at once, not {len(ids)}")
        for task_id in ids:
            check_task_id(task_id)
        return await dash.run(cards, dash.store, ids)

    async def get_tree(request: Request) -> Any:
        return await dash.run(tree.task_tree, dash.store)

    async def get_task(request: Request) -> Any:
        task_id = request.path_params["task_id"]
        detail = await dash.run(partial(task_queue.get_task, events=30), dash.queue, task_id)
        return detail.model_dump(mode="json")

    async def get_graph(request: Request) -> Any:
        limit = int_param(request, "limit", 2500, 1, 10_000)
        return await dash.run(partial(layout.graph_layout, limit=limit), dash.store)

    async def get_agents(request: Request) -> Any:
        return await dash.run(agents_view, dash)

    async def get_leaderboard(request: Request) -> Any:
        return await dash.run(leaderboard_view, dash.store)

    async def get_events(request: Request) -> Any:
        after = int_param(request, "after", 0, 0, 2**62)
        limit = int_param(request, "limit", 100, 1, 1000)
        task_id = request.query_params.get("task_id") or None
        if task_id is not None:
            check_task_id(task_id)
        agent = request.query_params.get("agent") or None
        return await dash.run(events_view, dash.store, after, limit, task_id, agent)

    async def get_threads(request: Request) -> Any:
        return await dash.run(threads_view, dash.store, int_param(request, "limit", 50, 1, 500))

    async def get_thread_messages(request: Request) -> Any:
        thread = await dash.run(get_thread, dash.mail, request.path_params["thread_id"])
        return {"messages": [m.model_dump(mode="json") for m in thread.messages]}

    async def get_inbox(request: Request) -> Any:
        agent = check_agent_name(request.path_params["agent"])
        limit = int_param(request, "limit", 50, 1, 200)
        page = await dash.run(_peek_inbox, dash.mail, agent, limit)
        return {"messages": page}

    async def get_mail_search(request: Request) -> Any:
        query = request.query_params.get("q", "")
        hits = await dash.run(partial(search_mail, limit=50), dash.mail, query)
        return {"hits": [h.model_dump(mode="json") for h in hits]}

    async def get_reservations(request: Request) -> Any:
        return await dash.run(reservations_view, dash.reservations)

    async def get_memory(request: Request) -> Any:
        query = request.query_params.get("q", "")
        layer = request.query_params.get("layer", "all")
        return await dash.run(memory_view, dash.memory, query, layer, int_param(request, "limit", 20, 1, 100))

    async def get_quality(request: Request) -> Any:
        return await dash.run(quality_view, dash)

    async def get_metrics(request: Request) -> Any:
        hours = int_param(request, "hours", 24, 1, 720)
        return await dash.run(partial(metrics.metrics, hours=hours, now_ms=dash.queue.now()), dash.store)

    async def post_move(request: Request, actor: Actor, body: dict[str, Any]) -> Any:
        task_id = request.path_params["task_id"]
        to = parse_state(body.get("to"))
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise InvalidInput("reason must be text")
        await dash.run(move_task, dash.queue, dash.memory, actor, task_id, to, reason)
        await dash.run(_remember, dash, actor)
        return {"card": await dash.run(card_of, dash.store, task_id)}

    async def post_priority(request: Request, actor: Actor, body: dict[str, Any]) -> Any:
        task_id = request.path_params["task_id"]
        await dash.run(reprioritise, dash.queue, actor, task_id, body.get("priority"))
        return {"card": await dash.run(card_of, dash.store, task_id)}

    async def post_mail(request: Request, actor: Actor, body: dict[str, Any]) -> Any:
        try:
            message = NewMessage.model_validate(body)
        except ValidationError as error:
            raise InvalidInput(describe_validation_error(error, "message")) from None
        await dash.run(_remember, dash, actor)
        sent = await dash.run(send_mail, dash.mail, Sender(actor.name, SenderKind.HUMAN), message)
        return {"message": sent.model_dump(mode="json")}

    async def post_release(request: Request, actor: Actor, body: dict[str, Any]) -> Any:
        try:
            reservation_id = int(request.path_params["reservation_id"])
        except ValueError:
            raise InvalidInput("a reservation id is a number; the reservations page lists them") from None
        return await dash.run(release_reservation, dash.reservations, actor.name, reservation_id)

    def get(path: str, fn: Callable[[Request], Any]) -> Route:
        return Route(path, read(fn), methods=["GET"])

    def post(path: str, fn: Callable[[Request, Actor, dict[str, Any]], Any]) -> Route:
        return Route(path, write(fn), methods=["POST"])

    return [
        get("/api/overview", get_overview),
        get("/api/board", get_board),
        get("/api/cards", get_cards),
        get("/api/tree", get_tree),
        get("/api/tasks/{task_id}", get_task),
        get("/api/graph", get_graph),
        get("/api/agents", get_agents),
        get("/api/leaderboard", get_leaderboard),
        get("/api/events", get_events),
        get("/api/mail/threads", get_threads),
        get("/api/mail/threads/{thread_id}", get_thread_messages),
        get("/api/mail/inbox/{agent}", get_inbox),
        get("/api/mail/search", get_mail_search),
        get("/api/reservations", get_reservations),
        get("/api/memory/search", get_memory),
        get("/api/quality", get_quality),
        get("/api/metrics", get_metrics),
        post("/api/tasks/{task_id}/move", post_move),
        post("/api/tasks/{task_id}/priority", post_priority),
        post("/api/mail/send", post_mail),
        post("/api/reservations/{reservation_id}/release", post_release),
    ]


def _peek_inbox(ctx: MailContext, agent: str, limit: int) -> list[dict[str, Any]]:
    """An agent's newest deliveries, read-only: looking does not move its cursor or mark anything read."""
    rows = ctx.store.query(
        """SELECT m.*, d.read_at, d.acked_at, d.id AS delivery FROM deliveries d JOIN messages m ON m.id = d.message_id
        WHERE d.recipient = :agent ORDER BY d.id DESC LIMIT :limit""",
        {"agent": agent, "limit": limit},
    )
    return [message_from_row(r, include_body=True).model_dump(mode="json") for r in rows]


def _remember(dash: Dashboard, actor: Actor) -> None:
    """Make the person known as a mail correspondent (replies can reach them)."""
    AgentRegistry(dash.store, dash.settings.agents, dash.queue.clock).remember(actor.name, [])
