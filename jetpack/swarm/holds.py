"""Push-style assignment when agents pull: who should get which ready task, and the holds that say so.

A push strategy decides *which agent* gets a task (round-robin: the next agent in turn;
load-balanced: the least loaded, longest idle agent), but agents pull: they call claim_task
when they want work. So a plan deals the ready tasks to the agents that could take one now —
the caller and every live agent with no claim and no hold — and each pre-assignment becomes a
*hold*: for a few seconds (``swarm.hold_seconds``) only that agent may claim the task, and its
own claims take it first (jetpack/tasks/claims.py). An agent that never comes loses the hold
when it lapses. Holds are written in the same batch as the caller's claim, and only over holds
that have lapsed, so two plans racing each other cannot both hand out one task.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from jetpack.store import DataLayer, Statement

ROUND_ROBIN_CURSOR = "swarm.round_robin.last"  # meta key: the agent dealt a task most recently


@dataclass(frozen=True)
class AgentLoad:
    """An agent that could take a task now, with what the push strategies weigh."""

    name: str
    skills: frozenset[str]
    active: int = 0  # claimed or in-progress tasks it holds
    last_work: int | None = None  # when it last claimed a task (ms), None if never

    def can_do(self, skills: Sequence[str]) -> bool:
        return set(skills) <= self.skills


@dataclass(frozen=True)
class Offer:
    """A ready task as the planners see it."""

    id: str
    skills: tuple[str, ...]


@dataclass(frozen=True)
class Assignment:
    task_id: str
    agent: str


def read_participants(store: DataLayer, caller: AgentLoad, now: int, stale_ms: int) -> list[AgentLoad]:
    """The caller and every live agent (a session seen within ``stale_ms``) that holds no claim and
    no live hold: those a push plan deals to."""
    rows = store.query(
        """SELECT a.name, a.skills FROM agents a
        WHERE a.ended_at IS NULL AND a.last_seen_at >= :since AND a.name != :caller
          AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.state IN ('claimed', 'in_progress') AND t.assignee = a.name)
          AND NOT EXISTS (SELECT 1 FROM task_holds h WHERE h.agent = a.name AND h.expires_at > :now)
        ORDER BY a.name""",
        {"since": now - stale_ms, "caller": caller.name, "now": now},
    )
    return [caller, *(AgentLoad(r["name"], frozenset(json.loads(r["skills"]))) for r in rows)]


RECENT_EVENTS = 20_000  # how far back load-balanced looks for an agent's last claim


def with_load(store: DataLayer, agents: Sequence[AgentLoad]) -> list[AgentLoad]:
    """The agents with their active claims and when each last claimed a task — looked up among the
    latest events only, so the cost does not grow with the database (no claim there: idle longest)."""
    names = json.dumps([a.name for a in agents])
    active = {
        r["assignee"]: r["n"]
        for r in store.query(
            "SELECT assignee, count(*) AS n FROM tasks WHERE state IN ('claimed', 'in_progress') "
            "AND assignee IN (SELECT value FROM json_each(:names)) GROUP BY assignee",
            {"names": names},
        )
    }
    last = {
        r["actor"]: r["at"]
        for r in store.query(
            "SELECT actor, max(at) AS at FROM (SELECT actor, at, kind FROM events ORDER BY id DESC LIMIT :window) "
            "WHERE kind = 'claimed' AND actor IN (SELECT value FROM json_each(:names)) GROUP BY actor",
            {"names": names, "window": RECENT_EVENTS},
        )
    }
    return [AgentLoad(a.name, a.skills, active.get(a.name, 0), last.get(a.name)) for a in agents]


def read_cursor(store: DataLayer) -> str | None:
    rows = store.query("SELECT value FROM meta WHERE key = :k", {"k": ROUND_ROBIN_CURSOR})
    return str(rows[0]["value"]) if rows else None


def deal_round_robin(offers: Sequence[Offer], agents: Sequence[AgentLoad], after: str | None) -> list[Assignment]:
    """Agents in turn (by name, starting after ``after``, the last agent dealt a task): each ready task,
    in queue order, goes to the next agent in turn that can do it; one task per agent."""
    ordered = sorted(agents, key=lambda a: a.name)
    if after is not None:
        cut = next((i for i, a in enumerate(ordered) if a.name > after), 0)
        ordered = ordered[cut:] + ordered[:cut]
    waiting = list(ordered)
    dealt: list[Assignment] = []
    for offer in offers:
        if not waiting:
            break
        taker = next((a for a in waiting if a.can_do(offer.skills)), None)
        if taker is None:
            continue
        dealt.append(Assignment(offer.id, taker.name))
        position = waiting.index(taker)
        waiting = waiting[position + 1 :] + waiting[:position]  # the turn moves past the taker
    return dealt


def deal_load_balanced(offers: Sequence[Offer], agents: Sequence[AgentLoad]) -> list[Assignment]:
    """The least loaded agent first (fewest active claims, then the longest since it last claimed,
    then by name); each takes the first ready task in queue order that it can do."""
    order = sorted(agents, key=lambda a: (a.active, -1 if a.last_work is None else a.last_work, a.name))
    return deal_in_turn(order, lambda agent, taken: _first_doable(offers, agent, taken))


def deal_in_turn(agents: Sequence[AgentLoad], choose: Callable[[AgentLoad, set[str]], str | None]) -> list[Assignment]:
    """Each agent in order takes the task ``choose`` picks for it among those not taken yet."""
    taken: set[str] = set()
    dealt: list[Assignment] = []
    for agent in agents:
        task_id = choose(agent, taken)
        if task_id is not None:
            taken.add(task_id)
            dealt.append(Assignment(task_id, agent.name))
    return dealt


def _first_doable(offers: Sequence[Offer], agent: AgentLoad, taken: set[str]) -> str | None:
    return next((o.id for o in offers if o.id not in taken and agent.can_do(o.skills)), None)


def hold_statements(
    assignments: Sequence[Assignment], strategy: str, now: int, hold_ms: int, *, cursor: str | None = None
) -> list[Statement]:
    """Forget lapsed holds, hold each assigned task for its agent (over lapsed holds only, and only
    while the task is ready), and move the round-robin cursor."""
    statements = [Statement("DELETE FROM task_holds WHERE expires_at <= :now", {"now": now})]
    statements += [
        Statement(
            """INSERT INTO task_holds(task_id, agent, strategy, created_at, expires_at)
            SELECT :task, :agent, :strategy, :now, :until WHERE EXISTS
                (SELECT 1 FROM tasks WHERE id = :task AND state = 'ready')
            ON CONFLICT(task_id) DO UPDATE SET agent = excluded.agent, strategy = excluded.strategy,
                created_at = excluded.created_at, expires_at = excluded.expires_at
            WHERE task_holds.expires_at <= :now""",
            {"task": a.task_id, "agent": a.agent, "strategy": strategy, "now": now, "until": now + hold_ms},
        )
        for a in assignments
    ]
    if cursor is not None:
        statements.append(
            Statement(
                "INSERT INTO meta(key, value) VALUES (:k, :v) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                {"k": ROUND_ROBIN_CURSOR, "v": cursor},
            )
        )
    return statements


def own_holds(store: DataLayer, agent: str, now: int) -> list[str]:
    """The ready tasks held for ``agent`` now, oldest hold first."""
    rows = store.query(
        "SELECT h.task_id FROM task_holds h JOIN tasks t ON t.id = h.task_id "
        "WHERE h.agent = :agent AND h.expires_at > :now AND t.state = 'ready' ORDER BY h.expires_at, h.task_id",
        {"agent": agent, "now": now},
    )
    return [r["task_id"] for r in rows]


def live_holds(store: DataLayer, now: int) -> list[Assignment]:
    """Holds in force on ready tasks."""
    rows = store.query(
        "SELECT h.task_id, h.agent FROM task_holds h JOIN tasks t ON t.id = h.task_id "
        "WHERE h.expires_at > :now AND t.state = 'ready' ORDER BY h.task_id",
        {"now": now},
    )
    return [Assignment(r["task_id"], r["agent"]) for r in rows]
