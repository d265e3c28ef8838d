"""The five claim strategies: which ready task an agent gets when it calls claim_task.

A strategy only orders candidates; the claim itself is always ONE atomic, guarded statement
batch (jetpack/tasks/claims.py) that takes the first candidate still ready — the claimer's own
held task first — so strategies cannot double-claim, whatever runs concurrently.

* ``first-fit``: the first ready task in queue order (priority, then age) the agent can do;
* ``best-fit``: the best skill match first (required skills / the agent's skills: the more of
  its skills a task uses, the better; a task needing none scores 0), then queue order;
* ``graph-prioritized``: the highest TaskGraph score first (+100 on the critical path, +10 per
  transitive dependant, +20 x (1 - normalised depth)), then queue order;
* ``round-robin`` and ``load-balanced`` push: see jetpack/swarm/holds.py.

docs/swarm.md ("Scheduling") says precisely how each decides.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from jetpack.actor import Actor
from jetpack.config import AgentSettings
from jetpack.errors import InvalidInput, JetpackError
from jetpack.reservations.patterns import patterns_overlap
from jetpack.store import Row, Statement
from jetpack.swarm.holds import (
    AgentLoad,
    Assignment,
    Offer,
    deal_in_turn,
    deal_load_balanced,
    deal_round_robin,
    hold_statements,
    own_holds,
    read_cursor,
    read_participants,
    with_load,
)
from jetpack.tasks import ClaimOutcome, QueueContext, Task, claim_task
from jetpack.tasks.claims import NOT_HELD, QUEUE_ORDER, SKILLS_OK, claim_also_statement, claim_statements
from jetpack.tasks.rows import task_from_row
from jetpack.tasks.sql import RetryPolicy


class Strategy(StrEnum):
    FIRST_FIT = "first-fit"
    BEST_FIT = "best-fit"
    ROUND_ROBIN = "round-robin"
    LOAD_BALANCED = "load-balanced"
    GRAPH_PRIORITIZED = "graph-prioritized"


PUSH_STRATEGIES = frozenset({Strategy.ROUND_ROBIN, Strategy.LOAD_BALANCED})
BEST_FIT_ORDER = f"json_array_length(t.skills) DESC, {QUEUE_ORDER}"
MAX_BATCH = 20
_RANKED = 32  # candidates handed to one claim statement
_ATTEMPTS = 3  # plans re-made when every candidate was taken meanwhile
_PLAN_OFFERS = 500  # ready tasks a push plan deals from, in queue order


def parse_strategy(value: str | None, default: str = Strategy.BEST_FIT.value) -> Strategy:
    name = (value or default).strip().lower()
    try:
        return Strategy(name)
    except ValueError:
        raise InvalidInput(f"unknown strategy {name!r}; choose one of {', '.join(s.value for s in Strategy)}") from None


@dataclass(frozen=True)
class Candidate:
    """A ready task an agent may claim, with what the strategies look at."""

    id: str
    priority: int
    created_at: int
    skills: tuple[str, ...]
    files: tuple[str, ...]
    parent_id: str | None

    @classmethod
    def of(cls, row: Row) -> Candidate:
        return cls(
            row["id"], row["priority"], row["created_at"], _names(row["skills"]), _names(row["files"]), row["parent_id"]
        )

    @property
    def queue_key(self) -> tuple[int, int, str]:
        return (self.priority, self.created_at, self.id)


def _names(text: str) -> tuple[str, ...]:
    return () if text == "[]" else tuple(json.loads(text))  # most tasks have none: skip the parser


@dataclass
class StrategyClaim:
    """What a strategy's claim got: the claimed tasks (one, or a batch), or why none."""

    strategy: Strategy
    tasks: list[Task] = field(default_factory=list)
    reason: str | None = None

    @property
    def task(self) -> Task | None:
        return self.tasks[0] if self.tasks else None


# ---------------------------------------------------------------------------------------------
# Candidates and pull rankings


def ready_candidates(ctx: QueueContext, actor: Actor | None, limit: int | None = None) -> list[Candidate]:
    """Ready tasks in queue order: those ``actor`` may claim (skills, holds of others), or without an
    actor every ready task nobody holds."""
    now = ctx.now()
    if actor is None:
        where = "NOT EXISTS (SELECT 1 FROM task_holds h WHERE h.task_id = t.id AND h.expires_at > :now)"
        params: dict[str, object] = {"now": now}
    else:
        where = f"{SKILLS_OK} AND {NOT_HELD}"
        params = {"now": now, "actor": actor.name, "skills": json.dumps(sorted(actor.skills))}
    rows = ctx.store.query(
        f"SELECT t.id, t.priority, t.created_at, t.skills, t.files, t.parent_id FROM tasks t "
        f"WHERE t.state = 'ready' AND {where} ORDER BY {QUEUE_ORDER}" + (" LIMIT :limit" if limit else ""),
        {**params, "limit": limit} if limit else params,
    )
    return [Candidate.of(r) for r in rows]


def skill_match(actor_skills: frozenset[str], task_skills: Sequence[str]) -> float:
    """How much of the agent's skill set a task uses (1 when it needs all of them; 0 when it needs none)."""
    return len(task_skills) / len(actor_skills) if actor_skills else 0.0


def rank(
    ctx: QueueContext, actor_skills: frozenset[str], strategy: Strategy, candidates: list[Candidate]
) -> list[Candidate]:
    """A pull strategy's order over candidates (push strategies rank in queue order)."""
    if strategy is Strategy.BEST_FIT:
        return sorted(candidates, key=lambda c: (-skill_match(actor_skills, c.skills), c.queue_key))
    if strategy is Strategy.GRAPH_PRIORITIZED and candidates:
        from jetpack.swarm.graph import task_graph  # numpy: only when this strategy is used

        graph = task_graph(ctx.store)
        scores, index = graph.scores(), graph.structure.index

        def score(c: Candidate) -> float:
            position = index.get(c.id)
            return 0.0 if position is None else float(scores[position])

        return sorted(candidates, key=lambda c: (-score(c), c.queue_key))
    return sorted(candidates, key=lambda c: c.queue_key)


# ---------------------------------------------------------------------------------------------
# Claiming


def claim_next(
    ctx: QueueContext,
    actor: Actor,
    strategy: str | Strategy | None = None,
    *,
    task_id: str | None = None,
    batch: int = 1,
) -> StrategyClaim:
    """Claim for ``actor`` under ``strategy`` (default: the swarm's ``[swarm] strategy``): a named
    task, or the strategy's choice; with ``batch`` > 1, up to that many related ready tasks at once."""
    chosen = parse_strategy(strategy.value if isinstance(strategy, Strategy) else strategy, ctx.swarm.strategy)
    if not 1 <= batch <= MAX_BATCH:
        raise InvalidInput(f"batch must be between 1 and {MAX_BATCH}, not {batch}")
    if batch > 1:
        return _claim_batch(ctx, actor, chosen, task_id, batch)
    if task_id is not None:
        return _result(chosen, claim_task(ctx, actor, task_id))
    if chosen is Strategy.FIRST_FIT or (chosen is Strategy.BEST_FIT and not actor.skills):
        return _result(chosen, claim_task(ctx, actor))  # the queue order: one indexed statement
    if chosen is Strategy.BEST_FIT:
        return _result(chosen, claim_task(ctx, actor, order=BEST_FIT_ORDER))
    if chosen in PUSH_STRATEGIES:
        return _claim_pushed(ctx, actor, chosen)
    for _ in range(_ATTEMPTS):
        ranked = rank(ctx, actor.skills, chosen, ready_candidates(ctx, actor))
        outcome = claim_task(ctx, actor, ranked=[c.id for c in ranked[:_RANKED]])
        if outcome.task is not None or not ranked:
            return _result(chosen, outcome)
    return _result(chosen, claim_task(ctx, actor))  # the graph kept moving: take the queue order


def _result(strategy: Strategy, outcome: ClaimOutcome) -> StrategyClaim:
    return StrategyClaim(strategy, [outcome.task] if outcome.task else [], outcome.reason)


def _claim_pushed(ctx: QueueContext, actor: Actor, strategy: Strategy) -> StrategyClaim:
    """Deal the ready tasks to the caller and the idle agents, hold the others' shares for them, and
    claim the caller's (or its own earlier hold) — one batch."""
    for _ in range(_ATTEMPTS):
        now = ctx.now()
        dealt, cursor = plan_push(ctx, actor, strategy, now)
        mine = [a.task_id for a in dealt if a.agent == actor.name]
        others = [a for a in dealt if a.agent != actor.name]
        statements = [
            *hold_statements(others, strategy.value, now, _hold_ms(ctx), cursor=cursor),
            *claim_statements(actor, None, now, ctx.lease_ms(), RetryPolicy.of(ctx.settings), ranked=mine),
        ]
        rows = ctx.store.write(statements)[-1]
        if rows:
            return StrategyClaim(strategy, [task_from_row(rows[0])])
        if not mine:
            break  # nothing is this agent's to take now
    return _result(strategy, claim_task(ctx, actor, ranked=[]))  # says why nothing is ready for it


def plan_push(ctx: QueueContext, caller: Actor, strategy: Strategy, now: int) -> tuple[list[Assignment], str | None]:
    """Who gets which ready task under a push strategy (and the new round-robin cursor)."""
    agents = read_participants(ctx.store, AgentLoad(caller.name, caller.skills), now, _stale_ms())
    offers = [Offer(c.id, c.skills) for c in ready_candidates(ctx, None, _PLAN_OFFERS)]
    if strategy is Strategy.LOAD_BALANCED:
        return deal_load_balanced(offers, with_load(ctx.store, agents)), None
    dealt = deal_round_robin(offers, agents, read_cursor(ctx.store))
    return dealt, (dealt[-1].agent if dealt else None)


def assign_ready_tasks(
    ctx: QueueContext, agents: Sequence[Actor], strategy: str | Strategy | None = None
) -> list[Assignment]:
    """The coordinator's push (e.g. ``jetpack start`` between claims): hold ready tasks for idle
    ``agents`` as ``strategy`` would hand them out, so each agent's next claim_task takes its own.
    Pull strategies deal in turn (agents in the order given), each agent its best-ranked task."""
    chosen = parse_strategy(strategy.value if isinstance(strategy, Strategy) else strategy, ctx.swarm.strategy)
    now = ctx.now()
    loads = [AgentLoad(a.name, a.skills) for a in agents]
    offers = ready_candidates(ctx, None, _PLAN_OFFERS)
    cursor = None
    if chosen is Strategy.ROUND_ROBIN:
        dealt = deal_round_robin([Offer(c.id, c.skills) for c in offers], loads, read_cursor(ctx.store))
        cursor = dealt[-1].agent if dealt else None
    elif chosen is Strategy.LOAD_BALANCED:
        dealt = deal_load_balanced([Offer(c.id, c.skills) for c in offers], with_load(ctx.store, loads))
    else:
        by_agent = {
            a.name: rank(ctx, a.skills, chosen, [c for c in offers if set(c.skills) <= a.skills]) for a in loads
        }
        dealt = deal_in_turn(
            loads, lambda agent, taken: next((c.id for c in by_agent[agent.name] if c.id not in taken), None)
        )
    ctx.store.write(hold_statements(dealt, chosen.value, now, _hold_ms(ctx), cursor=cursor))
    return dealt


def _hold_ms(ctx: QueueContext) -> int:
    return int(ctx.swarm.hold_seconds * 1000)


def _stale_ms() -> int:
    return int(AgentSettings().stale_seconds * 1000)


# ---------------------------------------------------------------------------------------------
# Batches


def related(anchor: Candidate, other: Candidate) -> bool:
    """Same parent, or planned files that overlap (patterns the matcher cannot read never match)."""
    if anchor.parent_id is not None and anchor.parent_id == other.parent_id:
        return True
    for a in anchor.files:
        for b in other.files:
            try:
                if patterns_overlap(a, b):
                    return True
            except JetpackError:
                continue
    return False


def _claim_batch(ctx: QueueContext, actor: Actor, strategy: Strategy, task_id: str | None, size: int) -> StrategyClaim:
    """The anchor (the strategy's choice, or ``task_id``) and up to size - 1 ready tasks related to
    it, claimed in one transaction; the related ones only if the anchor was claimed."""
    for _ in range(_ATTEMPTS):
        now = ctx.now()
        candidates = ready_candidates(ctx, actor)
        holds: list[Statement] = []
        if task_id is None:
            if strategy in PUSH_STRATEGIES:
                dealt, cursor = plan_push(ctx, actor, strategy, now)
                theirs = [a for a in dealt if a.agent != actor.name]
                holds = hold_statements(theirs, strategy.value, now, _hold_ms(ctx), cursor=cursor)
                mine = {a.task_id for a in dealt if a.agent == actor.name}
                taken = mine | {a.task_id for a in theirs}
                candidates = [c for c in candidates if c.id in mine] + [c for c in candidates if c.id not in taken]
            else:
                candidates = rank(ctx, actor.skills, strategy, candidates)
            held = set(own_holds(ctx.store, actor.name, now))  # a hold for this agent comes first
            candidates = [c for c in candidates if c.id in held] + [c for c in candidates if c.id not in held]
            if not candidates:
                return _result(strategy, claim_task(ctx, actor, ranked=[]))
            anchor = candidates[0]
        else:
            found = [c for c in candidates if c.id == task_id]
            if not found:  # not claimable: the single claim says why (or renews the caller's own)
                return _result(strategy, claim_task(ctx, actor, task_id))
            anchor = found[0]
            candidates = [anchor, *rank(ctx, actor.skills, strategy, [c for c in candidates if c.id != task_id])]
        others = [c.id for c in candidates[1:] if related(anchor, c)][: size - 1]
        statements = [
            *holds,
            *claim_statements(actor, anchor.id, now, ctx.lease_ms(), RetryPolicy.of(ctx.settings)),
            claim_also_statement(actor, anchor.id, others, now, ctx.lease_ms()),
        ]
        results = ctx.store.write(statements)
        if results[-2]:
            claimed = [task_from_row(r) for r in results[-2]]
            rank_of = {task: i for i, task in enumerate(others)}
            claimed += sorted((task_from_row(r) for r in results[-1]), key=lambda t: rank_of[t.id])
            return StrategyClaim(strategy, claimed)
        if task_id is not None:
            return _result(strategy, claim_task(ctx, actor, task_id))
    return _result(strategy, claim_task(ctx, actor))
