"""Agent identity: names are held by one live session; stale, ended or dead sessions free them."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest

from jetpack.agents import AgentRegistry, SessionInfo, generate_name, parse_skills
from jetpack.clock import ManualClock
from jetpack.config import AgentSettings
from jetpack.errors import Conflict, InvalidInput
from jetpack.mail import MailContext
from jetpack.memory.context import MemoryContext
from jetpack.memory.embedders import create_embedder
from jetpack.reservations.service import ReservationContext
from jetpack.server.session import AgentSession, IdentityDefaults
from jetpack.store import DataLayer
from jetpack.tasks import NewTask, QueueContext, claim_task, create_tasks


@pytest.fixture
def registry(store: DataLayer, clock: ManualClock) -> AgentRegistry:
    return AgentRegistry(store, AgentSettings(stale_seconds=60), clock)


def new_session(queue: QueueContext, registry: AgentRegistry, defaults: IdentityDefaults | None = None) -> AgentSession:
    return AgentSession(
        queue=queue,
        registry=registry,
        mail=MailContext(store=queue.store, clock=queue.clock),
        reservations=ReservationContext(store=queue.store, clock=queue.clock),
        memory=MemoryContext(store=queue.store, embedder=create_embedder("hash"), clock=queue.clock),
        defaults=defaults or IdentityDefaults(),
    )


def session(name: str, client_session: str | None = None, pid: int | None = None) -> SessionInfo:
    return SessionInfo(session_id=name, client_session_id=client_session, pid=pid, host=socket.gethostname())


def test_a_live_name_is_refused_to_another_session(registry: AgentRegistry) -> None:
    registry.register("heron", ["python"], session("s1"))
    with pytest.raises(Conflict, match="held by a live session"):
        registry.register("heron", [], session("s2"))
    assert registry.register("heron", ["go"], session("s1")).skills == ["go"]  # re-registering is fine


def test_a_silent_session_loses_its_name(registry: AgentRegistry, clock: ManualClock) -> None:
    registry.register("heron", [], session("s1"))
    clock.advance(61)
    assert registry.register("heron", [], session("s2")).session_id == "s2"
    assert not registry.touch("heron", "s1")


def test_an_ended_session_frees_its_name(registry: AgentRegistry) -> None:
    registry.register("heron", [], session("s1"))
    registry.end_session("heron", "s1")
    assert registry.register("heron", [], session("s2")).session_id == "s2"


def test_a_dead_process_on_this_host_frees_its_name(registry: AgentRegistry) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True, text=True
    )
    registry.register("heron", [], session("s1", pid=int(dead.stdout)))
    assert registry.register("heron", [], session("s2")).session_id == "s2"


def test_a_resumed_client_session_gets_its_name_back(registry: AgentRegistry) -> None:
    registry.register("heron", [], session("s1", client_session="claude-abc"))
    assert registry.register("heron", [], session("s2", client_session="claude-abc")).session_id == "s2"


def test_names_and_skills_are_validated() -> None:
    assert re.match(r"^[a-z]+-[a-z]+$", generate_name())
    assert parse_skills("Python, SQL,,python") == ["python", "sql"]
    with pytest.raises(InvalidInput, match="agent name"):
        IdentityDefaults.from_environ({"JETPACK_AGENT": "no spaces please"})


def test_session_registers_lazily_from_the_environment(
    queue: QueueContext, registry: AgentRegistry, store: DataLayer
) -> None:
    defaults = IdentityDefaults.from_environ({"JETPACK_AGENT": "kestrel", "JETPACK_SKILLS": "python,Go"})
    agent = new_session(queue, registry, defaults)
    assert store.query("SELECT count(*) AS n FROM agents")[0]["n"] == 0
    actor = agent.actor()
    assert (actor.name, actor.skills) == ("kestrel", frozenset({"python", "go"}))
    assert store.query("SELECT name FROM agents") == [{"name": "kestrel"}]


def test_calls_are_heartbeats_that_renew_leases(
    queue: QueueContext, registry: AgentRegistry, clock: ManualClock, store: DataLayer
) -> None:
    agent = new_session(queue, registry, IdentityDefaults(name="kestrel"))
    actor = agent.actor()
    task = create_tasks(queue, actor, [NewTask(title="t")])[0].id
    claim_task(queue, actor, task)
    expiry = store.query("SELECT lease_expires_at FROM tasks")[0]["lease_expires_at"]
    clock.advance(30)
    agent.actor()
    row = store.query("SELECT lease_expires_at FROM tasks")[0]
    assert row["lease_expires_at"] == expiry + 30_000
    seen = store.query("SELECT last_seen_at FROM agents")[0]["last_seen_at"]
    assert seen == clock.now_ms()


def test_a_session_that_lost_its_name_is_told_to_register_again(
    queue: QueueContext, registry: AgentRegistry, clock: ManualClock
) -> None:
    agent = new_session(queue, registry, IdentityDefaults(name="kestrel"))
    agent.actor()
    clock.advance(61)
    registry.register("kestrel", [], session("usurper"))
    with pytest.raises(Conflict, match="call register_agent"):
        agent.actor()


def test_generated_names_avoid_live_ones(queue: QueueContext, registry: AgentRegistry) -> None:
    names = {new_session(queue, registry).actor().name for _ in range(30)}
    assert len(names) == 30
