"""Agent health: states derived from heartbeats, the heartbeat itself, and who holds what.

Every tool call of an MCP session is a heartbeat (``AgentSession`` records it, throttled), and
``jetpack start`` beats for each of its workers with :func:`heartbeat`. From the latest one:

* ``dead``: silent for ``agents.dead_seconds``; or its session ended (cleanly, or it switched names)
  or its process on this host is gone, and it has been silent for ``agents.exit_grace_seconds``
  since (time for a resumed session, or the supervisor that ran it, to settle what it held). Its
  work goes back to the queue (``jetpack.swarm.recovery``).
* ``stale``: silent for ``agents.stale_seconds``, or gone and still within its grace. Its name is
  free for another session; its claims stand until it is dead, its task stalls or its lease lapses.
* ``active``: heard from lately and holding claimed work.
* ``idle``: heard from lately, holding nothing.

People and scripts at the CLI have no session and no heartbeat: they are ``active`` while they hold
a claim and ``idle`` otherwise, and their claims last as long as their leases.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

from jetpack.clock import format_ms, to_datetime
from jetpack.config import AgentSettings
from jetpack.errors import InvalidInput
from jetpack.processes import process_alive
from jetpack.store import Row, Statement
from jetpack.tasks import QueueContext, TaskState

# The session id of agents known only from the CLI (AgentRegistry.remember).
CLI_SESSION = "cli"
HELD_SQL = "('claimed', 'in_progress')"
MAX_AGENTS = 500


class AgentState(StrEnum):
    ACTIVE = "active"  # heard from lately, holds claimed work
    IDLE = "idle"  # heard from lately, holds nothing
    STALE = "stale"  # silent for agents.stale_seconds: its name is free, its claims stand
    DEAD = "dead"  # session ended, process gone, or silent for agents.dead_seconds: its work is recovered


STATE_ORDER = {AgentState.ACTIVE: 0, AgentState.IDLE: 1, AgentState.STALE: 2, AgentState.DEAD: 3}


@dataclass(frozen=True)
class LifecycleContext:
    """What the health and recovery services need: the queue, the thresholds and this host's name
    (a process id means something only on the host that recorded it)."""

    queue: QueueContext
    settings: AgentSettings = field(default_factory=AgentSettings)
    host: str = field(default_factory=socket.gethostname)

    def now(self) -> int:
        return self.queue.now()


@dataclass(frozen=True)
class Health:
    state: AgentState
    reason: str | None = None  # why an agent is dead or stale


def is_cli(row: Row) -> bool:
    return bool(row["session_id"] == CLI_SESSION)


def agent_health(row: Row, now: int, settings: AgentSettings, *, holds_work: bool, host: str | None = None) -> Health:
    """The state of the agent in ``row`` (a row of ``agents``) at ``now``."""
    if is_cli(row):
        return Health(AgentState.ACTIVE if holds_work else AgentState.IDLE)
    silent_ms = now - row["last_seen_at"]
    exit_reason = None
    if row["ended_at"] is not None:
        exit_reason = f"its session ended at {format_ms(row['ended_at'])}"
    elif row["pid"] and row["host"] == (host or socket.gethostname()) and not process_alive(row["pid"]):
        exit_reason = f"its process {row['pid']} on {row['host']} is gone"
    if exit_reason is not None:
        if silent_ms >= settings.exit_grace_seconds * 1000:
            return Health(AgentState.DEAD, exit_reason)
        return Health(AgentState.STALE, f"{exit_reason}; dead after agents.exit_grace_seconds")
    if silent_ms >= settings.dead_seconds * 1000:
        return Health(AgentState.DEAD, f"no heartbeat for {describe_duration(silent_ms)}")
    if silent_ms >= settings.stale_seconds * 1000:
        return Health(AgentState.STALE, f"no heartbeat for {describe_duration(silent_ms)}")
    return Health(AgentState.ACTIVE if holds_work else AgentState.IDLE)


def task_budget_ms(estimate_minutes: int | None, settings: AgentSettings) -> int:
    """How long a task may run before it is reported as long-running: its estimate x budget_factor
    (budget_default_seconds without one), clamped to [budget_min_seconds, budget_max_seconds]."""
    wanted = (
        estimate_minutes * 60 * settings.budget_factor
        if estimate_minutes is not None
        else settings.budget_default_seconds
    )
    return int(min(max(wanted, settings.budget_min_seconds), settings.budget_max_seconds) * 1000)


class Heartbeat(BaseModel):
    agent: str
    live: bool  # the agent has a session that has not ended (False: unknown, ended, or a CLI name)
    leases_renewed: int = 0


def heartbeat(ctx: LifecycleContext, agent: str) -> Heartbeat:
    """Record that ``agent`` is alive (``jetpack start`` calls this for each running worker) and renew
    its leases, as any tool call of its session would. An ended session is not revived."""
    now = ctx.now()
    params = {"agent": agent, "now": now, "lease": now + ctx.queue.lease_ms(), "cli": CLI_SESSION}
    seen, renewed = ctx.queue.store.write(
        [
            Statement(
                "UPDATE agents SET last_seen_at = :now WHERE name = :agent AND ended_at IS NULL "
                "AND session_id != :cli RETURNING name",
                params,
            ),
            Statement(
                f"""UPDATE tasks SET lease_expires_at = :lease
                WHERE assignee = :agent AND state IN {HELD_SQL}
                  AND EXISTS (SELECT 1 FROM agents WHERE name = :agent AND ended_at IS NULL
                              AND session_id != :cli AND last_seen_at = :now)
                RETURNING id""",
                params,
            ),
        ]
    )
    return Heartbeat(agent=agent, live=bool(seen), leases_renewed=len(renewed))


class HeldTask(BaseModel):
    id: str
    title: str
    state: TaskState
    claimed_at: datetime | None = None
    lease_expires_at: datetime | None = None
    running_seconds: int = 0
    budget_seconds: int
    over_budget: bool = False  # long-running: reported, never killed while its holder is alive


class AgentStatus(BaseModel):
    name: str
    state: AgentState
    reason: str | None = None
    heartbeat_age_seconds: int
    last_seen_at: datetime
    skills: list[str] = []
    tasks: list[HeldTask] = []
    client_name: str | None = None
    pid: int | None = None
    host: str | None = None
    cli: bool = False  # known from the CLI only: no heartbeat, claims last their lease


class AgentList(BaseModel):
    agents: list[AgentStatus]
    counts: dict[str, int]  # every known agent by state, before filters
    more: bool = False


def held_tasks_by_agent(ctx: LifecycleContext, now: int) -> dict[str, list[HeldTask]]:
    rows = ctx.queue.store.query(
        f"""SELECT id, title, state, assignee, claimed_at, lease_expires_at, estimate_minutes FROM tasks
        WHERE state IN {HELD_SQL} ORDER BY claimed_at, id"""
    )
    held: dict[str, list[HeldTask]] = {}
    for row in rows:
        budget = task_budget_ms(row["estimate_minutes"], ctx.settings)
        running = now - row["claimed_at"] if row["claimed_at"] is not None else 0
        held.setdefault(row["assignee"], []).append(
            HeldTask(
                id=row["id"],
                title=row["title"],
                state=TaskState(row["state"]),
                claimed_at=to_datetime(row["claimed_at"]),
                lease_expires_at=to_datetime(row["lease_expires_at"]),
                running_seconds=running // 1000,
                budget_seconds=budget // 1000,
                over_budget=running > budget,
            )
        )
    return held


def list_agents(
    ctx: LifecycleContext,
    *,
    states: list[AgentState] | None = None,
    skill: str | None = None,
    holding: bool | None = None,
    limit: int = 100,
) -> AgentList:
    """Agents with their state, heartbeat age, skills and the tasks they hold (with lease expiry and
    time budget): active first, then idle, stale and dead; most recently heard from first."""
    if not 1 <= limit <= MAX_AGENTS:
        raise InvalidInput(f"limit must be between 1 and {MAX_AGENTS}, not {limit}")
    now = ctx.now()
    held = held_tasks_by_agent(ctx, now)
    everyone = []
    for row in ctx.queue.store.query("SELECT * FROM agents"):
        tasks = held.get(row["name"], [])
        health = agent_health(row, now, ctx.settings, holds_work=bool(tasks), host=ctx.host)
        everyone.append(
            AgentStatus(
                name=row["name"],
                state=health.state,
                reason=health.reason,
                heartbeat_age_seconds=max(0, now - row["last_seen_at"]) // 1000,
                last_seen_at=to_datetime(row["last_seen_at"]),
                skills=json.loads(row["skills"]),
                tasks=tasks,
                client_name=row["client_name"],
                pid=row["pid"],
                host=row["host"],
                cli=is_cli(row),
            )
        )
    counts = {state.value: sum(a.state is state for a in everyone) for state in AgentState}
    wanted = [
        a
        for a in everyone
        if (not states or a.state in states)
        and (skill is None or skill.lower() in a.skills)
        and (holding is None or bool(a.tasks) == holding)
    ]
    wanted.sort(key=lambda a: (STATE_ORDER[a.state], a.heartbeat_age_seconds, a.name))
    return AgentList(agents=wanted[:limit], counts=counts, more=len(wanted) > limit)


def describe_duration(ms: int) -> str:
    seconds = ms // 1000
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
