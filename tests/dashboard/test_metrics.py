"""Dashboard metrics: the agents' leaderboard and the hourly flow figures, over scripted histories."""

from __future__ import annotations

import pytest

from jetpack.actor import Actor
from jetpack.clock import ManualClock
from jetpack.config import TaskSettings
from jetpack.dashboard.metrics import HOUR_MS, leaderboard, metrics
from jetpack.errors import InvalidInput
from jetpack.store import DataLayer
from jetpack.tasks import (
    FailMode,
    NewTask,
    QueueContext,
    claim_task,
    complete_task,
    create_tasks,
    fail_task,
    release_expired_leases,
)

pytestmark = pytest.mark.both_adapters  # the SQL must suit a libSQL server too

HOUR0 = 472_223 * HOUR_MS  # an hour boundary (2023-11-14 23:00 UTC)
MINUTE = 60
PLANNER = Actor("planner")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start_ms=HOUR0)


@pytest.fixture
def queue(store: DataLayer, clock: ManualClock) -> QueueContext:
    """Leases of an hour, so the scripted work never lapses unless a test lets it."""
    return QueueContext(store=store, settings=TaskSettings(lease_seconds=3600), clock=clock)


def create(queue: QueueContext, *titles: str) -> list[str]:
    return [c.id for c in create_tasks(queue, PLANNER, [NewTask(title=t) for t in titles])]


def work(queue: QueueContext, clock: ManualClock, agent: Actor, task_id: str, minutes: float) -> None:
    claim_task(queue, agent, task_id)
    clock.advance(minutes * MINUTE)
    complete_task(queue, agent, task_id, "done")


def test_leaderboard_counts_completions_failures_and_lapsed_leases_per_agent(
    queue: QueueContext, clock: ManualClock, alice: Actor, bob: Actor
) -> None:
    t1, t2, t3, t4, t5, t6 = create(queue, "t1", "t2", "t3", "t4", "t5", "t6")
    work(queue, clock, alice, t1, 10)
    work(queue, clock, alice, t2, 30)
    claim_task(queue, bob, t3)
    fail_task(queue, bob, t3, "tests fail", FailMode.RETRY)  # a retry
    claim_task(queue, bob, t4)
    clock.advance(3601)
    assert [r["id"] for r in release_expired_leases(queue)] == [t4]  # bob's lease lapsed: a retry he caused
    work(queue, clock, bob, t5, 5)
    claim_task(queue, bob, t6)
    fail_task(queue, bob, t6, "impossible", FailMode.GIVE_UP)  # a final failure, not a retry

    assert leaderboard(queue.store) == [
        {
            "agent": "alice",
            "done": 2,
            "failed": 0,
            "success_rate": 1.0,
            "median_minutes": 20.0,
            "retries_caused": 0,
        },
        {
            "agent": "bob",
            "done": 1,
            "failed": 3,
            "success_rate": 0.25,
            "median_minutes": 5.0,
            "retries_caused": 2,
        },
    ]


def test_leaderboard_leaves_out_those_who_never_claimed(queue: QueueContext, alice: Actor) -> None:
    create(queue, "planned only")
    assert leaderboard(queue.store) == []
    claim_task(queue, alice)
    assert leaderboard(queue.store) == [
        {
            "agent": "alice",
            "done": 0,
            "failed": 0,
            "success_rate": None,
            "median_minutes": None,
            "retries_caused": 0,
        }
    ]


def test_metrics_buckets_rates_and_percentiles_over_a_scripted_three_hours(
    queue: QueueContext, clock: ManualClock, alice: Actor, bob: Actor
) -> None:
    # Hour 0: four leaves (the epic is not work), one done after 20 minutes (claimed at 10).
    a, b, c, _epic, _d = (
        t.id
        for t in create_tasks(
            queue,
            PLANNER,
            [
                NewTask(title="a"),
                NewTask(title="b"),
                NewTask(title="c"),
                NewTask(title="e", children=[NewTask(title="d")]),
            ],
        )
    )
    clock.advance(10 * MINUTE)
    work(queue, clock, alice, a, 10)
    # Hour 1: b fails once (a retry), then is done 40 minutes after its first claim.
    clock.advance(40 * MINUTE)
    claim_task(queue, bob, b)
    clock.advance(5 * MINUTE)
    fail_task(queue, bob, b, "flaky", FailMode.RETRY)
    clock.advance(5 * MINUTE)
    work(queue, clock, bob, b, 30)
    # Hour 2: c fails for good; one more leaf is created.
    clock.advance(20 * MINUTE)
    claim_task(queue, alice, c)
    clock.advance(1 * MINUTE)
    fail_task(queue, alice, c, "cannot be done", FailMode.GIVE_UP)
    clock.advance(1 * MINUTE)
    create(queue, "f")
    clock.advance(28 * MINUTE)

    result = metrics(queue.store, hours=3, now_ms=clock.now_ms())

    assert [b["hour"] for b in result["buckets"]] == [HOUR0, HOUR0 + HOUR_MS, HOUR0 + 2 * HOUR_MS]
    assert [(b["done"], b["failed"], b["created"], b["retries"], b["queue_depth"]) for b in result["buckets"]] == [
        (1, 0, 4, 0, 3),  # b, c, d wait
        (1, 0, 0, 1, 2),  # c, d
        (0, 1, 1, 0, 2),  # d, f
    ]
    assert result["lead_time_minutes"] == {"p50": 60.0, "p90": pytest.approx(92.0)}  # of 20 and 100
    assert result["cycle_time_minutes"] == {"p50": 25.0, "p90": pytest.approx(37.0)}  # of 10 and 40
    assert result["failure_rate"] == pytest.approx(1 / 3)
    assert result["retry_rate"] == pytest.approx(1 / 4)  # one retry in four claims
    assert result["throughput_per_hour"] == pytest.approx(2 / 3)


def test_metrics_count_only_what_happened_inside_the_window(
    queue: QueueContext, clock: ManualClock, alice: Actor
) -> None:
    first, second = create(queue, "first", "second")
    work(queue, clock, alice, first, 15)
    clock.advance(2 * 3600)
    claim_task(queue, alice, second)
    fail_task(queue, alice, second, "no", FailMode.GIVE_UP)

    result = metrics(queue.store, hours=1, now_ms=clock.now_ms())

    assert [(b["hour"], b["done"], b["failed"], b["queue_depth"]) for b in result["buckets"]] == [
        (HOUR0 + 2 * HOUR_MS, 0, 1, 0)
    ]
    assert result["lead_time_minutes"] is None and result["cycle_time_minutes"] is None
    assert (result["failure_rate"], result["retry_rate"], result["throughput_per_hour"]) == (1.0, 0.0, 0.0)


def test_metrics_of_an_empty_project_are_zero_or_none(store: DataLayer) -> None:
    result = metrics(store, hours=24, now_ms=HOUR0 + 123)
    assert len(result["buckets"]) == 24
    assert result["buckets"][-1]["hour"] == HOUR0
    assert all(b["done"] == b["queue_depth"] == 0 for b in result["buckets"])
    assert result["lead_time_minutes"] is None
    assert result["failure_rate"] is None and result["retry_rate"] is None
    assert result["throughput_per_hour"] == 0.0


@pytest.mark.parametrize("hours", [0, -1, 721, True])
def test_metrics_refuse_hours_outside_one_to_720(store: DataLayer, hours: int) -> None:
    with pytest.raises(InvalidInput, match="hours must be a whole number from 1 to 720"):
        metrics(store, hours=hours, now_ms=HOUR0)
