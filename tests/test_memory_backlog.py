"""Outcomes become memory off the request path: a durable backlog row written with the completion,
drained by a worker (or at once without one), exactly one memory per outcome even when a drain dies."""

from __future__ import annotations

import threading
import time

import pytest

from jetpack import workloop
from jetpack.actor import Actor
from jetpack.clock import ManualClock
from jetpack.config import Settings
from jetpack.errors import JetpackError
from jetpack.memory.backlog import BacklogWorker, drain, drain_all
from jetpack.memory.context import MemoryContext
from jetpack.memory.embedders import create_embedder
from jetpack.reservations.service import ReservationContext
from jetpack.store import DataLayer, Statement
from jetpack.tasks import FailMode, NewTask, QueueContext, claim_task, create_tasks

# Generous bound for the worker thread to catch up; only there so a broken build cannot hang.
WORKER_WAIT_SECONDS = 30


@pytest.fixture
def mem(settings: Settings, store: DataLayer, clock: ManualClock) -> MemoryContext:
    return MemoryContext.for_settings(settings, store, clock, create_embedder("hash"))


@pytest.fixture
def reservations(settings: Settings, store: DataLayer, clock: ManualClock) -> ReservationContext:
    return ReservationContext.for_settings(settings, store, clock)


def count(store: DataLayer, sql: str) -> int:
    return int(store.query(f"SELECT count(*) AS n FROM {sql}")[0]["n"])


def outcomes(store: DataLayer, task_id: str) -> int:
    return count(store, f"memories WHERE task_id = '{task_id}' AND source = 'task'")


def claimed_task(queue: QueueContext, alice: Actor, title: str) -> str:
    create_tasks(queue, alice, [NewTask(title=title)])
    outcome = claim_task(queue, alice)
    assert outcome.task is not None
    return outcome.task.id


def test_without_a_worker_the_outcome_is_remembered_before_the_call_returns(
    queue: QueueContext, reservations: ReservationContext, mem: MemoryContext, alice: Actor
) -> None:
    task_id = claimed_task(queue, alice, "Add rate limiting to the API")
    workloop.complete_for_agent(queue, reservations, mem, alice, task_id, "Token bucket per key", learnings=["x y z"])
    assert outcomes(mem.store, task_id) == 1
    assert count(mem.store, "memories WHERE source = 'agent'") == 1  # the learning
    assert count(mem.store, "memory_backlog") == 0


def test_an_outcome_that_says_nothing_is_not_remembered_unless_the_task_was_given_memories(
    queue: QueueContext, reservations: ReservationContext, mem: MemoryContext, alice: Actor
) -> None:
    bare = claimed_task(queue, alice, "Add rate limiting to the API")
    workloop.complete_for_agent(queue, reservations, mem, alice, bare, "done")
    assert outcomes(mem.store, bare) == 0 and count(mem.store, "memory_backlog") == 0
    with_files = claimed_task(queue, alice, "Add a retry budget")
    workloop.complete_for_agent(queue, reservations, mem, alice, with_files, "done", files_touched=["api/retry.py"])
    assert outcomes(mem.store, with_files) == 1

    # A task that was given memories at its claim reports back even when its summary is bare.
    helped = claimed_task(queue, alice, "Add rate limiting to the admin API")
    mem.store.execute(
        "INSERT INTO memory_uses(task_id, memory_id, agent, used_at) SELECT :task, id, 'alice', 0 FROM memories",
        {"task": helped},
    )
    workloop.complete_for_agent(queue, reservations, mem, alice, helped, "done")
    assert outcomes(mem.store, helped) == 1


def test_with_a_worker_the_call_only_queues_the_outcome(
    queue: QueueContext, reservations: ReservationContext, mem: MemoryContext, alice: Actor
) -> None:
    pokes: list[int] = []
    mem.on_outcome = lambda: pokes.append(1)
    task_id = claimed_task(queue, alice, "Add rate limiting to the API")
    workloop.complete_for_agent(queue, reservations, mem, alice, task_id, "Token bucket per key")
    failed_id = claimed_task(queue, alice, "Rotate the signing keys")
    workloop.fail_for_agent(queue, mem, alice, failed_id, "the KMS was down", FailMode.RETRY)
    assert pokes == [1, 1]
    assert count(mem.store, "memory_backlog") == 2
    assert count(mem.store, "memories") == 0

    assert drain_all(mem) == 2
    assert outcomes(mem.store, task_id) == 1
    assert outcomes(mem.store, failed_id) == 1
    assert count(mem.store, "memory_backlog") == 0


def test_a_refused_completion_queues_nothing(
    queue: QueueContext, reservations: ReservationContext, mem: MemoryContext, alice: Actor, bob: Actor
) -> None:
    mem.on_outcome = lambda: None
    task_id = claimed_task(queue, alice, "Write the migration")
    with pytest.raises(JetpackError):
        workloop.complete_for_agent(queue, reservations, mem, bob, task_id, "not mine")
    assert count(mem.store, "memory_backlog") == 0


def test_rows_of_a_drain_that_died_are_taken_again_once_their_claim_lapses(
    queue: QueueContext, reservations: ReservationContext, mem: MemoryContext, alice: Actor, clock: ManualClock
) -> None:
    mem.on_outcome = lambda: None
    task_id = claimed_task(queue, alice, "Cache the session lookups")
    workloop.complete_for_agent(queue, reservations, mem, alice, task_id, "LRU of 10k entries")
    # A drain claims the row and dies before remembering it (claim only, nothing else).
    mem.store.write(
        [
            Statement(
                "UPDATE memory_backlog SET claimed_by = 'dead-worker', claimed_until = :until",
                {"until": clock.now_ms() + 120_000},
            )
        ]
    )
    assert drain(mem, "live-worker") == 0  # still claimed by the dead one
    clock.advance(121)
    assert drain_all(mem, "live-worker") == 1
    assert outcomes(mem.store, task_id) == 1
    assert count(mem.store, "memory_backlog") == 0


def test_the_same_outcome_drained_twice_is_one_memory(
    queue: QueueContext, reservations: ReservationContext, mem: MemoryContext, alice: Actor
) -> None:
    mem.on_outcome = lambda: None
    task_id = claimed_task(queue, alice, "Cache the session lookups")
    workloop.complete_for_agent(queue, reservations, mem, alice, task_id, "LRU of 10k entries")
    # A worker that remembered the outcome but died before deleting its row: the row comes back.
    mem.store.write(
        [
            Statement(
                "INSERT INTO memory_backlog SELECT NULL, task_id, agent, summary, learnings, "
                "failed, created_at, NULL, NULL FROM memory_backlog"
            )
        ]
    )
    assert drain_all(mem) == 2
    assert outcomes(mem.store, task_id) == 1


def test_the_worker_thread_drains_when_poked_and_stops_cleanly(
    settings: Settings, queue: QueueContext, reservations: ReservationContext, store: DataLayer, alice: Actor
) -> None:
    mem = MemoryContext.for_settings(settings, store, embedder=create_embedder("hash"))
    worker = BacklogWorker(mem).start()
    mem.on_outcome = worker.poke
    try:
        ids = [claimed_task(queue, alice, f"Task number {i} of the batch") for i in range(3)]
        for task_id in ids:
            workloop.complete_for_agent(
                queue, reservations, mem, alice, task_id, f"finished {task_id} with tests green"
            )
        deadline = time.monotonic() + WORKER_WAIT_SECONDS
        while count(store, "memory_backlog") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [outcomes(store, task_id) for task_id in ids] == [1, 1, 1]
    finally:
        worker.stop()
    assert not any(t.name == "jetpack-memory-backlog" and t.is_alive() for t in threading.enumerate())
