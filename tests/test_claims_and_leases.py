"""Claims: order, skills, exclusivity, leases that expire and are renewed, and who may finish what."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from jetpack.actor import Actor
from jetpack.clock import ManualClock
from jetpack.config import TaskSettings
from jetpack.errors import Conflict, InvalidInput, NotFound, NotPermitted
from jetpack.store import DataLayer
from jetpack.tasks import (
    FailMode,
    NewTask,
    QueueContext,
    StatusChange,
    claim_task,
    complete_task,
    create_tasks,
    fail_task,
    release_expired_leases,
    renew_leases,
    update_task,
)

pytestmark = pytest.mark.both_adapters  # the embedded file and a real tursodb server


def row(queue: QueueContext, task_id: str) -> dict[str, object]:
    return queue.store.query(
        "SELECT state, assignee, attempts, lease_expires_at FROM tasks WHERE id = :id", {"id": task_id}
    )[0]


def one(queue: QueueContext, actor: Actor, **fields: object) -> str:
    return create_tasks(queue, actor, [NewTask(title="t", **fields)])[0].id  # type: ignore[arg-type]


def test_claim_takes_highest_priority_then_oldest(queue: QueueContext, clock: ManualClock, alice: Actor) -> None:
    low = one(queue, alice, priority=3)
    clock.advance(1)
    old_high = one(queue, alice, priority=1)
    clock.advance(1)
    new_high = one(queue, alice, priority=1)
    order = [claim_task(queue, alice).task for _ in range(3)]
    assert [t.id for t in order if t] == [old_high, new_high, low]


def test_claim_requires_every_required_skill(queue: QueueContext, alice: Actor, bob: Actor) -> None:
    needs_sql = one(queue, alice, skills=["SQL"])
    assert claim_task(queue, alice).task is None
    with pytest.raises(NotPermitted, match=r"requires skills \['sql'\]"):
        claim_task(queue, alice, needs_sql)
    outcome = claim_task(queue, bob)
    assert outcome.task is not None and outcome.task.id == needs_sql


def test_nothing_ready_comes_back_as_no_task_with_a_reason(queue: QueueContext, alice: Actor) -> None:
    outcome = claim_task(queue, alice)
    assert outcome.task is None and outcome.reason and "no tasks" in outcome.reason
    one(queue, alice, skills=["rust"])
    outcome = claim_task(queue, alice)
    assert outcome.task is None and outcome.reason and "need skills" in outcome.reason


def test_a_claimed_task_cannot_be_claimed_by_another_agent(queue: QueueContext, alice: Actor, bob: Actor) -> None:
    task = one(queue, alice)
    claim_task(queue, alice, task)
    with pytest.raises(Conflict, match="claimed by alice"):
        claim_task(queue, bob, task)
    assert claim_task(queue, alice, task).task is not None  # claiming your own task again is harmless


def test_claims_are_exclusive_across_threads_and_connections(
    store: DataLayer, another_store: Callable[[], DataLayer], datalayer_kind: str
) -> None:
    count = 300 if datalayer_kind == "sqlite" else 90  # tursodb answers a request in ~10 ms at best
    planner = QueueContext(store=store, settings=TaskSettings())
    create_tasks(planner, Actor("planner"), [NewTask(title=f"t{i}") for i in range(count)])
    won: dict[str, list[str]] = {}

    def worker(name: str) -> None:
        ctx = QueueContext(store=stores[name], settings=TaskSettings())
        actor = Actor(name)
        mine = won.setdefault(name, [])
        while (outcome := claim_task(ctx, actor)).task is not None:
            mine.append(outcome.task.id)
            complete_task(ctx, actor, outcome.task.id, "")

    stores = {f"w{i}": another_store() for i in range(6)}  # connections of their own, as other processes
    threads = [threading.Thread(target=worker, args=(name,)) for name in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [t for ids in won.values() for t in ids]
    assert len(claimed) == count == len(set(claimed))
    events = store.query("SELECT task_id, count(*) AS n FROM events WHERE kind = 'completed' GROUP BY task_id")
    assert len(events) == count and {e["n"] for e in events} == {1}


def test_an_expired_lease_returns_the_task_with_one_more_attempt(
    queue: QueueContext, clock: ManualClock, alice: Actor, bob: Actor
) -> None:
    task = one(queue, alice)
    claim_task(queue, alice, task)
    clock.advance(queue.settings.lease_seconds - 1)
    assert release_expired_leases(queue) == []
    clock.advance(2)
    assert release_expired_leases(queue) == [{"id": task, "state": "open"}]  # waiting to be retried
    assert row(queue, task) == {"state": "open", "assignee": None, "attempts": 1, "lease_expires_at": None}
    assert claim_task(queue, bob).task is None
    clock.advance(queue.settings.retry_backoff_seconds)
    outcome = claim_task(queue, bob)
    assert outcome.task is not None and outcome.task.id == task and outcome.task.attempts == 1
    complete_task(queue, bob, task, "finished what alice started")
    with pytest.raises(Conflict, match="is done"):
        fail_task(queue, alice, task, "late", FailMode.RETRY)


def test_claim_sweeps_expired_leases_before_choosing(
    store: DataLayer, clock: ManualClock, alice: Actor, bob: Actor
) -> None:
    queue = QueueContext(store=store, settings=TaskSettings(retry_backoff_seconds=0), clock=clock)
    task = one(queue, alice)
    claim_task(queue, alice)
    clock.advance(queue.settings.lease_seconds + 1)
    outcome = claim_task(queue, bob)  # no separate sweep ran
    assert outcome.task is not None and outcome.task.id == task and outcome.task.assignee == "bob"


def test_after_max_attempts_an_expiring_task_is_failed(store: DataLayer, clock: ManualClock, alice: Actor) -> None:
    queue = QueueContext(store=store, settings=TaskSettings(max_attempts=2, lease_seconds=10), clock=clock)
    task = one(queue, alice)
    for expected in ("open", "failed"):
        claim_task(queue, alice, task)
        clock.advance(11)
        release_expired_leases(queue)
        assert row(queue, task)["state"] == expected
        clock.advance(queue.settings.retry_backoff_seconds)
    assert row(queue, task)["attempts"] == 2
    assert claim_task(queue, alice).task is None


def test_any_call_of_the_holder_renews_its_leases(queue: QueueContext, clock: ManualClock, alice: Actor) -> None:
    first, second = one(queue, alice), one(queue, alice)
    claim_task(queue, alice, first)
    claim_task(queue, alice, second)
    clock.advance(queue.settings.lease_seconds - 5)
    assert renew_leases(queue, alice) == 2
    clock.advance(10)
    assert release_expired_leases(queue) == []
    assert row(queue, first)["state"] == "claimed"


def test_only_the_holder_can_update_complete_or_fail(queue: QueueContext, alice: Actor, bob: Actor) -> None:
    task = one(queue, alice)
    claim_task(queue, alice, task)
    for attempt in (
        lambda: complete_task(queue, bob, task, "mine now"),
        lambda: fail_task(queue, bob, task, "nope", FailMode.RELEASE),
        lambda: update_task(queue, bob, task, status=StatusChange.IN_PROGRESS),
    ):
        with pytest.raises(NotPermitted, match="claimed by alice"):
            attempt()
    assert row(queue, task)["assignee"] == "alice"


def test_an_operator_may_force_complete_anothers_claim(queue: QueueContext, alice: Actor) -> None:
    task = one(queue, alice)
    claim_task(queue, alice, task)
    done = complete_task(queue, Actor("human", operator=True), task, "merged by hand")
    assert done.state == "done"
    actors = queue.store.query("SELECT actor FROM events WHERE task_id = :id AND kind = 'completed'", {"id": task})
    assert actors == [{"actor": "human"}]


def test_completing_an_unclaimed_task_asks_to_claim_first(queue: QueueContext, alice: Actor) -> None:
    task = one(queue, alice)
    with pytest.raises(Conflict, match="claim_task"):
        complete_task(queue, alice, task, "")


def test_completing_twice_is_harmless(queue: QueueContext, alice: Actor) -> None:
    task = one(queue, alice)
    claim_task(queue, alice, task)
    complete_task(queue, alice, task, "once")
    again = complete_task(queue, alice, task, "twice")
    assert again.result_summary == "once"
    count = queue.store.query(
        "SELECT count(*) AS n FROM events WHERE task_id = :id AND kind = 'completed'", {"id": task}
    )
    assert count == [{"n": 1}]


@pytest.mark.parametrize(
    ("mode", "state", "attempts"),
    [(FailMode.RETRY, "open", 1), (FailMode.GIVE_UP, "failed", 1), (FailMode.RELEASE, "ready", 0)],
)
def test_fail_modes(queue: QueueContext, alice: Actor, mode: FailMode, state: str, attempts: int) -> None:
    task = one(queue, alice)
    claim_task(queue, alice, task)
    result = fail_task(queue, alice, task, "tests need a database", mode)
    assert (result.state, result.attempts) == (state, attempts)
    assert result.assignee == ("alice" if state == "failed" else None)


def test_blocked_needs_a_reason_and_unblocking_requeues(queue: QueueContext, alice: Actor, bob: Actor) -> None:
    task = one(queue, alice)
    claim_task(queue, alice, task)
    with pytest.raises(InvalidInput, match="needs a note"):
        update_task(queue, alice, task, status=StatusChange.BLOCKED)
    blocked = update_task(queue, alice, task, status=StatusChange.BLOCKED, note="needs API keys from ops")
    assert (blocked.state, blocked.blocked_reason, blocked.lease_expires_at) == (
        "blocked",
        "needs API keys from ops",
        None,
    )
    assert claim_task(queue, bob).task is None
    unblocked = update_task(queue, bob, task, status=StatusChange.OPEN, note="keys added")
    assert (unblocked.state, unblocked.assignee) == ("ready", None)


def test_progress_notes_are_logged_as_events(queue: QueueContext, alice: Actor) -> None:
    task = one(queue, alice)
    claim_task(queue, alice, task)
    update_task(queue, alice, task, status=StatusChange.IN_PROGRESS, note="starting")
    update_task(queue, alice, task, note="half way")
    events = queue.store.query("SELECT kind, note FROM events WHERE task_id = :id ORDER BY id", {"id": task})
    assert events[-2:] == [{"kind": "started", "note": "starting"}, {"kind": "progress", "note": "half way"}]


def test_unknown_and_malformed_ids_are_reported(queue: QueueContext, alice: Actor) -> None:
    with pytest.raises(NotFound, match="no task jp-zzzz"):
        claim_task(queue, alice, "jp-zzzz")
    with pytest.raises(InvalidInput, match="not a task id"):
        complete_task(queue, alice, "'; DROP TABLE tasks; --", "")


def test_anyone_may_block_an_unclaimed_task_but_only_the_holder_a_claimed_one(
    queue: QueueContext, alice: Actor, bob: Actor
) -> None:
    free, held = one(queue, alice), one(queue, alice)
    blocked = update_task(queue, bob, free, status=StatusChange.BLOCKED, note="waits for the design review")
    assert (blocked.state, blocked.assignee, blocked.blocked_reason) == ("blocked", None, "waits for the design review")
    with pytest.raises(Conflict):
        claim_task(queue, alice, free)
    with pytest.raises(Conflict, match="unblock it first"):
        update_task(queue, bob, free, status=StatusChange.BLOCKED, note="again")
    claim_task(queue, alice, held)
    with pytest.raises(NotPermitted, match="claimed by alice"):
        update_task(queue, bob, held, status=StatusChange.BLOCKED, note="not mine")
    assert update_task(queue, bob, free, status=StatusChange.OPEN).state == "ready"
