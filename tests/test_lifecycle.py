"""Agent lifecycle and recovery: states from heartbeats, dead agents' work requeued with a handoff
(exactly once, however many servers recover at once), stalled vs long-running, retry backoff."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest
from mcp import Client

from jetpack.actor import Actor
from jetpack.agents import AgentRegistry, SessionInfo
from jetpack.agents.health import AgentState, LifecycleContext, heartbeat, list_agents, task_budget_ms
from jetpack.clock import ManualClock
from jetpack.config import AgentSettings, Settings, TaskSettings
from jetpack.errors import Conflict
from jetpack.mail import MailContext, get_thread
from jetpack.reservations.service import ReservationContext, active_reservations, reserve_files
from jetpack.server import IdentityDefaults, build_parts, create_server
from jetpack.store import DataLayer
from jetpack.swarm.recovery import RecoveryCause, recover
from jetpack.tasks import (
    FailMode,
    NewTask,
    QueueContext,
    StatusChange,
    claim_task,
    complete_task,
    create_tasks,
    fail_task,
    get_task,
    update_task,
)
from jetpack.tasks.sql import RetryPolicy

pytestmark = pytest.mark.both_adapters  # the embedded file and a real tursodb server

AGENTS = AgentSettings(
    stale_seconds=60, dead_seconds=300, stalled_seconds=240, exit_grace_seconds=10, budget_min_seconds=300
)
PLANNER = Actor("planner")


@pytest.fixture
def lifecycle(queue: QueueContext) -> LifecycleContext:
    return LifecycleContext(queue, AGENTS)


@pytest.fixture
def registry(store: DataLayer, clock: ManualClock) -> AgentRegistry:
    return AgentRegistry(store, AGENTS, clock)


def a_gone_pid() -> int:
    """The id of a process that ran on this host and has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def join(registry: AgentRegistry, name: str, *, pid: int | None = None, skills: tuple[str, ...] = ()) -> Actor:
    """An agent with a session of its own, as an MCP server registers it (this process by default)."""
    info = SessionInfo(uuid.uuid4().hex, "test-client", None, pid or os.getpid(), socket.gethostname())
    registry.register(name, list(skills), info)
    return Actor(name, frozenset(skills))


def tasks(queue: QueueContext, *titles: str, **fields: Any) -> list[str]:
    created = create_tasks(queue, PLANNER, [NewTask(title=t, **fields) for t in titles])
    return [c.id for c in created]


def state_of(lifecycle: LifecycleContext, name: str) -> AgentState:
    return {a.name: a.state for a in list_agents(lifecycle).agents}[name]


def row(queue: QueueContext, task_id: str) -> dict[str, Any]:
    return queue.store.query(
        "SELECT state, assignee, attempts, retry_at, lease_expires_at FROM tasks WHERE id = :id", {"id": task_id}
    )[0]


# --- states --------------------------------------------------------------------------------------------


def test_an_agent_is_idle_then_active_then_stale_then_dead_as_its_heartbeats_stop(
    queue: QueueContext, clock: ManualClock, registry: AgentRegistry, lifecycle: LifecycleContext
) -> None:
    (task,) = tasks(queue, "Write the parser")
    worker = join(registry, "worker")
    assert state_of(lifecycle, "worker") is AgentState.IDLE
    claim_task(queue, worker, task)
    assert state_of(lifecycle, "worker") is AgentState.ACTIVE
    clock.advance(AGENTS.stale_seconds)
    assert state_of(lifecycle, "worker") is AgentState.STALE
    assert heartbeat(lifecycle, "worker").live
    assert state_of(lifecycle, "worker") is AgentState.ACTIVE
    clock.advance(AGENTS.dead_seconds)
    [dead] = list_agents(lifecycle, states=[AgentState.DEAD]).agents
    assert (dead.name, dead.reason, dead.heartbeat_age_seconds) == ("worker", "no heartbeat for 5 min", 300)
    assert [t.id for t in dead.tasks] == [task]


def test_an_ended_session_or_a_gone_process_is_dead_after_the_exit_grace(
    queue: QueueContext, clock: ManualClock, registry: AgentRegistry, lifecycle: LifecycleContext
) -> None:
    join(registry, "finished")
    registry.end_session("finished", registry.get("finished").session_id)  # type: ignore[union-attr]
    join(registry, "killed", pid=a_gone_pid())
    states = {a.name: (a.state, a.reason) for a in list_agents(lifecycle).agents}
    assert states["finished"][0] is AgentState.STALE and "session ended" in (states["finished"][1] or "")
    assert states["killed"][0] is AgentState.STALE and "is gone" in (states["killed"][1] or "")
    clock.advance(AGENTS.exit_grace_seconds)
    assert list_agents(lifecycle).counts == {"active": 0, "idle": 0, "stale": 0, "dead": 2}


def test_people_at_the_cli_have_no_heartbeat_and_are_never_dead(
    queue: QueueContext, clock: ManualClock, registry: AgentRegistry, lifecycle: LifecycleContext
) -> None:
    (task,) = tasks(queue, "Review the plan")
    registry.remember("cli-ann", [])
    claim_task(queue, Actor("cli-ann"), task)
    clock.advance(AGENTS.dead_seconds * 2)
    [ann] = list_agents(lifecycle).agents
    assert (ann.state, ann.cli, [t.id for t in ann.tasks]) == (AgentState.ACTIVE, True, [task])
    assert recover(lifecycle).recovered == []  # her claim lasts as long as its lease
    assert heartbeat(lifecycle, "cli-ann").live is False


def test_a_heartbeat_renews_leases_but_does_not_revive_an_ended_session(
    queue: QueueContext, clock: ManualClock, registry: AgentRegistry, lifecycle: LifecycleContext
) -> None:
    first, second = tasks(queue, "One", "Two")
    worker = join(registry, "worker")
    claim_task(queue, worker, first)
    claim_task(queue, worker, second)
    clock.advance(100)
    beat = heartbeat(lifecycle, "worker")
    assert (beat.live, beat.leases_renewed) == (True, 2)
    assert row(queue, first)["lease_expires_at"] == clock.now_ms() + queue.lease_ms()
    registry.end_session("worker", registry.get("worker").session_id)  # type: ignore[union-attr]
    clock.advance(100)
    assert heartbeat(lifecycle, "worker") == heartbeat(lifecycle, "worker").model_copy(
        update={"live": False, "leases_renewed": 0}
    )
    assert heartbeat(lifecycle, "nobody").live is False


# --- recovering a dead agent's work --------------------------------------------------------------------


def test_a_dead_agents_leases_and_reservations_are_released_and_its_tasks_requeued_with_a_handoff(
    queue: QueueContext, clock: ManualClock, registry: AgentRegistry, lifecycle: LifecycleContext
) -> None:
    parser, docs = tasks(queue, "Write the parser", "Document the parser")
    doomed = join(registry, "doomed", pid=a_gone_pid())
    bystander = join(registry, "bystander")
    reservations = ReservationContext(queue.store, clock=clock)
    claim_task(queue, doomed, parser)
    claim_task(queue, doomed, docs)
    update_task(queue, doomed, parser, status=StatusChange.IN_PROGRESS, note="lexer done, parser half way")
    reserve_files(reservations, "doomed", ["src/parser/**"], task_id=parser)
    reserve_files(reservations, "doomed", ["notes.md"])
    reserve_files(reservations, "bystander", ["src/cli.py"])
    claim_task(queue, bystander, tasks(queue, "Unrelated")[0])

    assert recover(lifecycle).recovered == []  # within its exit grace: a successor may still settle it
    clock.advance(AGENTS.exit_grace_seconds)
    report = recover(lifecycle)

    assert report.dead_agents == ["doomed"]
    assert report.released_reservations == 2
    assert {(r.task_id, r.cause, r.state, r.attempts) for r in report.recovered} == {
        (parser, RecoveryCause.DEAD, "open", 1),
        (docs, RecoveryCause.DEAD, "open", 1),
    }
    retry_at = clock.now_ms() + 30_000
    for task_id in (parser, docs):
        assert row(queue, task_id) == {
            "state": "open",  # waiting to be retried
            "assignee": None,
            "attempts": 1,
            "retry_at": retry_at,
            "lease_expires_at": None,
        }
    assert [r.agent for r in active_reservations(reservations)] == ["bystander"]
    assert state_of(lifecycle, "bystander") is AgentState.ACTIVE

    thread = get_thread(MailContext(queue.store, clock), parser)
    [handoff] = thread.messages
    assert (handoff.kind, handoff.sender, handoff.task_id) == ("handoff", "system", parser)
    assert "doomed is dead" in handoff.subject
    assert "is gone" in (handoff.body or "") and "lexer done, parser half way" in (handoff.body or "")
    assert json.loads(
        queue.store.query("SELECT addressed_to FROM messages WHERE id = :id", {"id": handoff.id})[0]["addressed_to"]
    ) == ["doomed", "planner"]
    detail = get_task(queue, parser)
    assert [(e.kind, e.actor) for e in detail.errors] == [("recovered", "system")]
    assert "doomed is dead" in (detail.errors[0].error or "")
    assert detail.task.retry_at is not None
    dead_events = queue.store.query("SELECT note, data FROM events WHERE kind = 'agent_dead'")
    assert len(dead_events) == 1 and sorted(json.loads(dead_events[0]["data"])["tasks"]) == sorted([parser, docs])

    assert recover(lifecycle).model_dump() == recover(lifecycle).model_dump()  # nothing more to do
    assert len(get_thread(MailContext(queue.store, clock), docs).messages) == 1


def test_a_dead_agent_holding_only_reservations_has_them_released(
    queue: QueueContext, clock: ManualClock, registry: AgentRegistry, lifecycle: LifecycleContext
) -> None:
    join(registry, "gone", pid=a_gone_pid())
    reservations = ReservationContext(queue.store, clock=clock)
    reserve_files(reservations, "gone", ["src/**"])
    clock.advance(AGENTS.exit_grace_seconds)
    report = recover(lifecycle)
    assert (report.dead_agents, report.released_reservations, report.recovered) == (["gone"], 1, [])
    assert active_reservations(reservations) == []


def test_an_agent_that_comes_back_before_recovery_keeps_its_work(
    queue: QueueContext, clock: ManualClock, registry: AgentRegistry, lifecycle: LifecycleContext
) -> None:
    (task,) = tasks(queue, "Keep me")
    worker = join(registry, "worker")
    claim_task(queue, worker, task)
    for _ in range(10):  # heartbeats just inside every threshold
        clock.advance(AGENTS.stalled_seconds - 1)
        heartbeat(lifecycle, "worker")
        assert recover(lifecycle).recovered == []
    assert row(queue, task)["assignee"] == "worker"


def test_two_servers_recovering_at_once_recover_each_task_exactly_once(
    queue: QueueContext,
    clock: ManualClock,
    registry: AgentRegistry,
    another_store: Callable[[], DataLayer],
) -> None:
    held: list[str] = []
    for n in range(6):
        agent = join(registry, f"doomed-{n}", pid=a_gone_pid())
        for task_id in tasks(queue, *(f"task {n}.{i}" for i in range(4))):
            claim_task(queue, agent, task_id)
            held.append(task_id)
    clock.advance(AGENTS.exit_grace_seconds)
    recoverers = [LifecycleContext(replace(queue, store=another_store()), AGENTS) for _ in range(4)]
    start = threading.Barrier(len(recoverers))
    reports: list[Any] = []

    def run(ctx: LifecycleContext) -> None:
        start.wait()
        reports.append(recover(ctx))

    threads = [threading.Thread(target=run, args=(ctx,)) for ctx in recoverers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    recovered = sorted(r.task_id for report in reports for r in report.recovered)
    assert recovered == sorted(held)
    assert sorted(a for report in reports for a in report.dead_agents) == [f"doomed-{n}" for n in range(6)]
    per_task = queue.store.query(
        "SELECT task_id, count(*) AS n FROM messages WHERE kind = 'handoff' GROUP BY task_id ORDER BY task_id"
    )
    assert per_task == [{"task_id": t, "n": 1} for t in sorted(held)]
    events = queue.store.query("SELECT count(*) AS n FROM events WHERE kind = 'recovered'")
    assert events == [{"n": len(held)}]
    assert {row(queue, t)["attempts"] for t in held} == {1}
    deliveries = queue.store.query("SELECT count(*) AS n FROM deliveries")
    assert deliveries == [{"n": 2 * len(held)}]  # the dead holder and the planner, once each


# --- stalled is not long-running -----------------------------------------------------------------------


def test_a_long_running_task_is_not_taken_from_a_holder_that_keeps_beating(
    queue: QueueContext, clock: ManualClock, registry: AgentRegistry, lifecycle: LifecycleContext
) -> None:
    (task,) = tasks(queue, "Migrate the warehouse", estimate_minutes=10)
    worker = join(registry, "worker")
    claim_task(queue, worker, task)
    assert task_budget_ms(10, AGENTS) == 20 * 60_000
    reported = []
    for beat in range(1, 60 * 2 + 1):  # an hour, three times its budget, a heartbeat every 30 s (as jetpack start)
        clock.advance(30)
        heartbeat(lifecycle, "worker")
        if beat % 10 == 0:  # a sweep every five minutes
            report = recover(lifecycle)
            assert report.recovered == []
            reported += [t.reported for t in report.long_running]
    assert reported.count(True) == 1 and len(reported) == 12 - 4  # over budget after 20 min
    [agent] = list_agents(lifecycle).agents
    assert agent.state is AgentState.ACTIVE and agent.tasks[0].over_budget
    notes = queue.store.query("SELECT note FROM events WHERE task_id = :id AND kind = 'long_running'", {"id": task})
    assert len(notes) == 1 and "past its time budget of 20 min" in notes[0]["note"]
    assert complete_task(queue, worker, task, "migrated").state == "done"


def test_a_stalled_task_is_recovered_while_its_holder_lives(
    queue: QueueContext, clock: ManualClock, registry: AgentRegistry
) -> None:
    lifecycle = LifecycleContext(queue, replace(AGENTS, dead_seconds=900))
    stuck, other = tasks(queue, "Stuck", "Other")
    hung = join(registry, "hung")
    reservations = ReservationContext(queue.store, clock=clock)
    claim_task(queue, hung, stuck)
    reserve_files(reservations, "hung", ["src/stuck.py"], task_id=stuck)
    reserve_files(reservations, "hung", ["src/mine.py"])
    clock.advance(AGENTS.stalled_seconds - 60)
    update_task(queue, hung, stuck, note="still compiling")  # progress on the task resets its clock
    clock.advance(AGENTS.stalled_seconds - 1)
    assert recover(lifecycle).recovered == []
    clock.advance(1)

    report = recover(lifecycle)
    [item] = report.recovered
    assert (item.task_id, item.agent, item.cause) == (stuck, "hung", RecoveryCause.STALLED)
    assert "no progress on it and no heartbeat from hung for 4 min" in item.reason
    assert report.dead_agents == [] and state_of(lifecycle, "hung") is AgentState.STALE  # alive, not dead
    assert [r.pattern for r in active_reservations(reservations)] == ["src/mine.py"]
    assert "stalled under hung" in get_thread(MailContext(queue.store, clock), stuck).messages[0].subject
    assert row(queue, other)["state"] == "ready"
    with pytest.raises(Conflict):
        complete_task(queue, hung, stuck, "too late")


# --- retries wait -----------------------------------------------------------------------------------


def test_a_task_that_fails_twice_waits_with_backoff_then_is_failed_with_both_errors(
    store: DataLayer, clock: ManualClock
) -> None:
    queue = QueueContext(store=store, settings=TaskSettings(max_attempts=2), clock=clock)
    (task,) = tasks(queue, "Flaky integration")
    worker = Actor("worker")
    claim_task(queue, worker, task)
    waiting = fail_task(queue, worker, task, "error one: the fixture server timed out", FailMode.RETRY)
    assert (waiting.state, waiting.attempts) == ("open", 1)
    assert waiting.retry_at is not None and int(waiting.retry_at.timestamp() * 1000) == clock.now_ms() + 30_000

    clock.advance(29)
    outcome = claim_task(queue, worker)
    assert outcome.task is None and "1 waiting to be retried" in (outcome.reason or "")
    with pytest.raises(Conflict, match="waits until"):
        claim_task(queue, worker, task)
    clock.advance(1)
    again = claim_task(queue, worker)
    assert again.task is not None and (again.task.id, again.task.attempts) == (task, 1)

    failed = fail_task(queue, worker, task, "error two: the schema drifted", FailMode.RETRY)
    assert (failed.state, failed.attempts, failed.retry_at) == ("failed", 2, None)
    detail = get_task(queue, task)
    assert [(e.attempt, e.kind, e.error) for e in detail.errors] == [
        (1, "attempt_failed", "error one: the fixture server timed out"),
        (2, "attempt_failed", "error two: the schema drifted"),
    ]
    events = [(e.kind, e.after, e.note) for e in detail.recent_events]
    assert ("unblocked", "ready", "retry wait over") in events
    assert events[-1] == ("attempt_failed", "failed", "error two: the schema drifted")


def test_retry_waits_double_up_to_the_cap(store: DataLayer, clock: ManualClock) -> None:
    settings = TaskSettings(max_attempts=6, retry_backoff_seconds=30, retry_backoff_max_seconds=100)
    queue = QueueContext(store=store, settings=settings, clock=clock)
    (task,) = tasks(queue, "Flaky")
    worker = Actor("worker")
    waits = []
    for _ in range(4):
        claim_task(queue, worker, task)
        failed = fail_task(queue, worker, task, "flaked", FailMode.RETRY)
        assert failed.retry_at is not None
        waits.append(int(failed.retry_at.timestamp() * 1000) - clock.now_ms())
        clock.advance(waits[-1] / 1000)
    assert waits == [30_000, 60_000, 100_000, 100_000]
    assert [RetryPolicy.of(settings).wait_ms(n) for n in (1, 2, 3, 4)] == waits


def test_reopening_a_task_cancelled_while_it_waited_makes_it_ready_at_once(
    queue: QueueContext, clock: ManualClock
) -> None:
    (task,) = tasks(queue, "Flaky")
    worker = Actor("worker")
    claim_task(queue, worker, task)
    fail_task(queue, worker, task, "flaked", FailMode.RETRY)
    update_task(queue, PLANNER, task, status=StatusChange.CANCELLED)
    from jetpack.tasks import reopen_task

    reopened = reopen_task(queue, PLANNER, task)
    assert (reopened.state, reopened.attempts, reopened.retry_at) == ("ready", 0, None)


# --- the list_agents tool --------------------------------------------------------------------------------


@pytest.fixture
def server(settings: Settings, store: DataLayer, clock: ManualClock) -> Any:
    settings = replace(settings, agents=AGENTS)
    return create_server(build_parts(settings, store=store, clock=clock, identity=IdentityDefaults()))


@asynccontextmanager
async def agent(server: Any, name: str, skills: list[str] | None = None) -> AsyncIterator[Client]:
    async with Client(server, mode="legacy") as client:
        result = await client.call_tool("register_agent", {"name": name, "skills": skills or []})
        assert not result.is_error, result.content
        yield client


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content[0].text  # type: ignore[union-attr]
    assert result.structured_content is not None
    assert json.loads(result.content[0].text) == result.structured_content  # type: ignore[union-attr]
    return result.structured_content


@pytest.mark.anyio
async def test_list_agents_shows_states_heartbeats_tasks_and_filters(server: Any, clock: ManualClock) -> None:
    async with agent(server, "alice", ["python"]) as alice, agent(server, "bob", ["sql"]) as bob:
        created = await call(alice, "create_tasks", tasks=[{"title": "Parser", "estimate_minutes": 1}])
        task_id = created["created"][0]["id"]
        await call(alice, "claim_task", task_id=task_id)
        clock.advance(AGENTS.stale_seconds + 1)
        listed = await call(bob, "list_agents")
        assert [(a["name"], a["state"]) for a in listed["agents"]] == [("bob", "idle"), ("alice", "stale")]
        assert listed["counts"] == {"active": 0, "idle": 1, "stale": 1, "dead": 0}
        stale_alice = listed["agents"][1]
        assert stale_alice["heartbeat_age_seconds"] == 61 and stale_alice["skills"] == ["python"]
        [held] = stale_alice["tasks"]
        assert (held["id"], held["state"], held["budget_seconds"]) == (task_id, "claimed", 300)
        assert held["lease_expires_at"] and "over_budget" not in held  # compact: defaults are left out

        await call(alice, "list_tasks")  # any call is a heartbeat
        active = await call(bob, "list_agents", state=["active"])
        assert [a["name"] for a in active["agents"]] == ["alice"]
        assert [a["name"] for a in (await call(bob, "list_agents", holding=False))["agents"]] == ["bob"]
        assert [a["name"] for a in (await call(bob, "list_agents", skill="SQL"))["agents"]] == ["bob"]


@pytest.mark.anyio
async def test_get_task_shows_both_errors_of_a_task_that_failed_twice(
    settings: Settings, store: DataLayer, clock: ManualClock
) -> None:
    settings = replace(settings, tasks=TaskSettings(max_attempts=2))
    server = create_server(build_parts(settings, store=store, clock=clock, identity=IdentityDefaults()))
    async with agent(server, "worker") as worker:
        task_id = (await call(worker, "create_tasks", tasks=[{"title": "Flaky"}]))["created"][0]["id"]
        await call(worker, "claim_task", task_id=task_id)
        first = await call(worker, "fail_task", task_id=task_id, reason="first error")
        assert first["state"] == "open" and first["retry_at"]
        assert (await call(worker, "claim_task"))["id"] is None
        clock.advance(30)
        assert (await call(worker, "claim_task"))["id"] == task_id
        await call(worker, "fail_task", task_id=task_id, reason="second error")
        detail = await call(worker, "get_task", task_id=task_id)
        assert detail["task"]["state"] == "failed"
        assert [e["error"] for e in detail["errors"]] == ["first error", "second error"]
