"""How the swarm is doing: the agents' leaderboard and hourly flow metrics, read from the event log.

Every task state change leaves an event (a trigger copies ``tasks.change_kind`` into ``events.kind``),
so a few plain SELECTs over ``events`` and ``tasks`` suffice; the figures are aggregated in Python,
which keeps the SQL acceptable to a libSQL server and each call to one pass over the rows.

The event kinds that matter here: ``claimed``; ``completed`` (a leaf finished — parents roll up as
``children_done`` and are not counted); ``reopened``; and the attempt endings — ``attempt_failed`` and
``failed`` (the holder's fail_task), ``lease_expired`` and ``recovered`` (the system took a lapsed claim,
or one of a dead or stalled agent, back). An ending whose ``after_state`` is ``failed`` is a final
failure; any other ending put the task back in the queue: a retry.
"""

from __future__ import annotations

import statistics
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import TypedDict

from jetpack.errors import InvalidInput
from jetpack.store import DataLayer
from jetpack.tasks.queries import ATTEMPT_ENDINGS

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
MAX_HOURS = 720

CLAIMED = "claimed"
COMPLETED = "completed"
REOPENED = "reopened"
# Endings the holder records itself (actor = the agent); the others are recorded by 'system'.
ENDED_BY_HOLDER = frozenset({"attempt_failed", "failed"})
FAILED_STATE = "failed"


class LeaderboardRow(TypedDict):
    agent: str
    done: int
    failed: int
    success_rate: float | None
    median_minutes: float | None
    retries_caused: int


class Percentiles(TypedDict):
    p50: float
    p90: float


class HourBucket(TypedDict):
    hour: int
    done: int
    failed: int
    created: int
    retries: int
    queue_depth: int


class Metrics(TypedDict):
    buckets: list[HourBucket]
    lead_time_minutes: Percentiles | None
    cycle_time_minutes: Percentiles | None
    failure_rate: float | None
    retry_rate: float | None
    throughput_per_hour: float


# --- the leaderboard ----------------------------------------------------------------------------


@dataclass
class _Tally:
    claims: int = 0
    done: int = 0
    failed: int = 0
    retries: int = 0
    minutes: list[float] = field(default_factory=list)


def leaderboard(store: DataLayer) -> list[LeaderboardRow]:
    """Per agent that ever claimed a task: tasks completed, failed attempts (its own fail_task calls,
    and its claims that lapsed or were recovered), the success rate, the median minutes from its
    claim to its completion, and the retries it caused. Most completions first."""
    events = store.query(
        f"SELECT actor, kind, task_id, at, after_state FROM events "
        f"WHERE kind IN ('{CLAIMED}', '{COMPLETED}', {ATTEMPT_ENDINGS}) ORDER BY id"
    )
    tallies: dict[str, _Tally] = {}
    holders: dict[str, tuple[str, int]] = {}  # task -> (agent, at) of its current claim
    for event in events:
        task, kind, actor = event["task_id"], event["kind"], event["actor"]
        if kind == CLAIMED:
            holders[task] = (actor, event["at"])
            tallies.setdefault(actor, _Tally()).claims += 1
            continue
        holder = holders.pop(task, None)
        if kind == COMPLETED:
            tally = tallies.setdefault(actor, _Tally())
            tally.done += 1
            if holder is not None and holder[0] == actor:
                tally.minutes.append((event["at"] - holder[1]) / MINUTE_MS)
            continue
        # A lapsed or recovered claim is recorded by 'system': it counts against whoever held it.
        agent = actor if kind in ENDED_BY_HOLDER else (holder[0] if holder else None)
        if agent is None:
            continue
        tally = tallies.setdefault(agent, _Tally())
        tally.failed += 1
        if event["after_state"] != FAILED_STATE:
            tally.retries += 1
    rows = [_leaderboard_row(agent, tally) for agent, tally in tallies.items() if tally.claims]
    rows.sort(key=lambda r: (-r["done"], r["failed"], r["agent"]))
    return rows


def _leaderboard_row(agent: str, tally: _Tally) -> LeaderboardRow:
    attempts = tally.done + tally.failed
    return {
        "agent": agent,
        "done": tally.done,
        "failed": tally.failed,
        "success_rate": tally.done / attempts if attempts else None,
        "median_minutes": statistics.median(tally.minutes) if tally.minutes else None,
        "retries_caused": tally.retries,
    }


# --- hourly metrics -----------------------------------------------------------------------------


def check_hours(hours: int) -> int:
    if isinstance(hours, bool) or not isinstance(hours, int) or not 1 <= hours <= MAX_HOURS:
        raise InvalidInput(
            f"hours must be a whole number from 1 to {MAX_HOURS} (30 days), not {hours!r}; "
            "ask for hours=24 for the last day"
        )
    return hours


def metrics(store: DataLayer, *, hours: int, now_ms: int) -> Metrics:
    """Hourly buckets (oldest first, the last one the current hour) of completions, final failures,
    created leaves, retries and the queue depth at the end of each hour; lead time (created → done)
    and cycle time (first claim → done) of the tasks completed in the window; failure and retry
    rates and throughput over the window. None wherever there is nothing to measure."""
    check_hours(hours)
    current = now_ms - now_ms % HOUR_MS
    start, end = current - (hours - 1) * HOUR_MS, current + HOUR_MS
    buckets: list[HourBucket] = [
        {"hour": start + k * HOUR_MS, "done": 0, "failed": 0, "created": 0, "retries": 0, "queue_depth": 0}
        for k in range(hours)
    ]
    claims = _count_outcomes(store, buckets, start, end)
    _fill_created_and_depth(store, buckets, now_ms)
    lead, cycle = _lead_and_cycle_minutes(store, start, end)
    done = sum(b["done"] for b in buckets)
    failed = sum(b["failed"] for b in buckets)
    retries = sum(b["retries"] for b in buckets)
    return {
        "buckets": buckets,
        "lead_time_minutes": percentiles(lead),
        "cycle_time_minutes": percentiles(cycle),
        "failure_rate": failed / (done + failed) if done + failed else None,
        "retry_rate": retries / claims if claims else None,
        "throughput_per_hour": done / hours,
    }


def _count_outcomes(store: DataLayer, buckets: list[HourBucket], start: int, end: int) -> int:
    """Add completions, final failures and retries to their hours; return the claims in the window."""
    events = store.query(
        f"SELECT at, kind, after_state FROM events WHERE at >= :start AND at < :end "
        f"AND kind IN ('{CLAIMED}', '{COMPLETED}', {ATTEMPT_ENDINGS})",
        {"start": start, "end": end},
    )
    claims = 0
    for event in events:
        bucket = buckets[(event["at"] - start) // HOUR_MS]
        if event["kind"] == CLAIMED:
            claims += 1
        elif event["kind"] == COMPLETED:
            bucket["done"] += 1
        elif event["after_state"] == FAILED_STATE:
            bucket["failed"] += 1
        else:
            bucket["retries"] += 1
    return claims


def _fill_created_and_depth(store: DataLayer, buckets: list[HourBucket], now_ms: int) -> None:
    """Leaves created in each hour, and the unfinished leaves at its end: created by then and not
    closed by then. A reopened task has lost its earlier closing time, so it counts as unfinished
    ever since it was created; and a task counts as a leaf by what it is now."""
    leaves = store.query(
        "SELECT created_at, closed_at FROM tasks t "
        "WHERE NOT EXISTS (SELECT 1 FROM tasks c WHERE c.parent_id = t.id AND c.state != 'cancelled')"
    )
    created = sorted(r["created_at"] for r in leaves)
    closed = sorted(r["closed_at"] for r in leaves if r["closed_at"] is not None)
    for bucket in buckets:
        last_ms = min(bucket["hour"] + HOUR_MS - 1, now_ms)
        bucket["created"] = bisect_left(created, bucket["hour"] + HOUR_MS) - bisect_left(created, bucket["hour"])
        bucket["queue_depth"] = bisect_right(created, last_ms) - bisect_right(closed, last_ms)


def _lead_and_cycle_minutes(store: DataLayer, start: int, end: int) -> tuple[list[float], list[float]]:
    """For each completion in the window: minutes since the task was created, and since its first
    claim (after its latest reopening)."""
    events = store.query(
        f"""SELECT e.task_id, e.kind, e.at, t.created_at FROM events e JOIN tasks t ON t.id = e.task_id
        WHERE e.kind IN ('{CLAIMED}', '{REOPENED}', '{COMPLETED}') AND e.task_id IN
            (SELECT task_id FROM events WHERE kind = '{COMPLETED}' AND at >= :start AND at < :end)
        ORDER BY e.id""",
        {"start": start, "end": end},
    )
    first_claim: dict[str, int] = {}
    lead: list[float] = []
    cycle: list[float] = []
    for event in events:
        task, kind, at = event["task_id"], event["kind"], event["at"]
        if kind == CLAIMED:
            first_claim.setdefault(task, at)
        elif kind == REOPENED:
            first_claim.pop(task, None)
        else:
            claimed = first_claim.pop(task, None)
            if start <= at < end:
                lead.append((at - event["created_at"]) / MINUTE_MS)
                if claimed is not None:
                    cycle.append((at - claimed) / MINUTE_MS)
    return lead, cycle


def percentiles(values: list[float]) -> Percentiles | None:
    """p50 and p90 by linear interpolation between the closest ranks; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return {"p50": _quantile(ordered, 0.5), "p90": _quantile(ordered, 0.9)}


def _quantile(ordered: list[float], q: float) -> float:
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
