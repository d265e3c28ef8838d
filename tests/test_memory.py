"""Memory: writing with merges, recall with filters and expiry, access counts, procedural learning.

Tests about meaning use the real default model (int8 MiniLM on onnxruntime); the others use the
deterministic hash embedder to stay fast.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jetpack.actor import Actor
from jetpack.clock import ManualClock
from jetpack.errors import Conflict, InvalidInput, NotFound
from jetpack.memory.context import MemoryContext
from jetpack.memory.embedders import Embedder, create_embedder
from jetpack.memory.learning import adjust_for_task_result, rate_memory
from jetpack.memory.loop import memories_for_task, remember_outcome
from jetpack.memory.model import Layer, NewMemory
from jetpack.memory.queries import get_memory, memory_stats
from jetpack.memory.recall import recall
from jetpack.memory.writing import forget, reindex, remember, sweep_expired_memories
from jetpack.store import DataLayer
from jetpack.tasks import NewTask, QueueContext, claim_task, complete_task, create_tasks

BCRYPT = "credentials are hashed with bcrypt, cost 12"


@pytest.fixture(scope="module")
def real_model() -> Embedder:
    return create_embedder("onnx")


@pytest.fixture
def mem(store: DataLayer, clock: ManualClock) -> MemoryContext:
    return MemoryContext(store=store, embedder=create_embedder("hash"), clock=clock)


@pytest.fixture
def real(store: DataLayer, clock: ManualClock, real_model: Embedder) -> MemoryContext:
    return MemoryContext(store=store, embedder=real_model, clock=clock)


def add(ctx: MemoryContext, content: str, **fields: object) -> int:
    return remember(ctx, "alice", NewMemory(content=content, **fields)).id  # type: ignore[arg-type]


UNRELATED = [
    f"{topic} {detail}"
    for topic in (
        "The CI pipeline caches npm modules",
        "Deploys to staging run every night",
        "The frontend uses a dark theme",
        "Logs rotate daily",
        "The API returns JSON with snake_case keys",
        "Docker images are built on Debian",
        "The cron job prunes old sessions",
        "Feature flags live in LaunchDarkly",
        "Grafana dashboards show request latency",
        "Markdown docs are built with mkdocs",
    )
    for detail in (
        "for the billing service",
        "in the EU region",
        "since the March release",
        "on weekdays only",
        "behind the VPN",
        "for mobile clients",
        "after code review",
        "in the monorepo",
        "per team",
        "by default",
        "for internal tools",
        "on the legacy cluster",
        "when tests pass",
        "for preview branches",
        "in production",
        "with a retry",
        "for the admin panel",
        "via Terraform",
        "under load tests",
        "for partners",
    )
]


def test_meaning_finds_the_answer_among_200_unrelated_memories(real: MemoryContext) -> None:
    assert len(UNRELATED) == 200
    for text in UNRELATED:
        add(real, text)
    answer = add(real, BCRYPT)
    hits = recall(real, "how are user passwords stored?", k=3)
    assert answer in [h.id for h in hits]


def test_working_memory_expires_and_is_swept_while_episodic_stays(mem: MemoryContext, clock: ManualClock) -> None:
    brief = add(mem, "the staging database is being migrated right now", layer=Layer.WORKING, ttl_seconds=1)
    kept = add(mem, "the staging database moved to a new host in May")
    assert {h.id for h in recall(mem, "staging database", k=5)} == {brief, kept}
    clock.advance(1.5)
    assert [h.id for h in recall(mem, "staging database", k=5)] == [kept]
    assert sweep_expired_memories(mem) == 1
    clock.advance(10 * 365 * 86_400)
    assert [h.id for h in recall(mem, "staging database", k=5)] == [kept]
    assert sweep_expired_memories(mem) == 0
    with pytest.raises(NotFound):
        get_memory(mem, brief)


def test_duplicates_are_merged_not_stored_twice(mem: MemoryContext) -> None:
    first = remember(mem, "alice", NewMemory(content="Run  the migrations before the tests", importance=0.3))
    again = remember(mem, "bob", NewMemory(content="Run the migrations before the tests", importance=0.8, tags=["ci"]))
    assert (again.id, again.merged) == (first.id, True)
    merged = get_memory(mem, first.id)
    assert (merged.importance, merged.access_count, merged.tags) == (0.8, 1, ["ci"])
    other_layer = remember(mem, "bob", NewMemory(content="Run the migrations before the tests", layer=Layer.PROCEDURAL))
    assert other_layer.id != first.id and not other_layer.merged


def test_near_duplicates_merge_above_the_threshold(real: MemoryContext) -> None:
    first = remember(real, "a", NewMemory(content="The integration tests need Postgres running on port 5432."))
    near = remember(real, "b", NewMemory(content="The integration tests need Postgres running on port 5432!"))
    far = remember(real, "c", NewMemory(content="Unit tests mock the database layer entirely."))
    assert near.merged and near.id == first.id
    assert not far.merged


def test_layer_tag_and_task_filters(mem: MemoryContext, queue: QueueContext) -> None:
    task = create_tasks(queue, Actor("alice"), [NewTask(title="auth")])[0].id
    tagged = add(mem, "login tokens expire after one hour", tags=["auth"], task_id=task)
    procedural = add(mem, "when adding a login route, add rate limiting", layer=Layer.PROCEDURAL, tags=["auth"])
    untagged = add(mem, "login page uses the shared form component")
    assert {h.id for h in recall(mem, "login", k=10)} == {tagged, procedural, untagged}
    assert [h.id for h in recall(mem, "login", k=10, layers=[Layer.PROCEDURAL])] == [procedural]
    assert {h.id for h in recall(mem, "login", k=10, tags=["AUTH"])} == {tagged, procedural}
    assert [h.id for h in recall(mem, "login", k=10, task_id=task)] == [tagged]
    with pytest.raises(NotFound, match="no task jp-zzzz"):
        add(mem, "x", task_id="jp-zzzz")


def test_recall_counts_access(mem: MemoryContext, clock: ManualClock) -> None:
    memory_id = add(mem, "feature flags are read at startup")
    clock.advance(5)
    recall(mem, "feature flags", k=1)
    recall(mem, "feature flags", k=1)
    seen = get_memory(mem, memory_id)
    assert seen.access_count == 2 and seen.last_accessed_at is not None
    recall(mem, "feature flags", k=1, count_access=False)
    assert get_memory(mem, memory_id).access_count == 2


def test_forget_and_stats(mem: MemoryContext) -> None:
    a = add(mem, "one")
    add(mem, "two", layer=Layer.WORKING)
    assert forget(mem, [a, 999]) == [a]
    stats = memory_stats(mem)
    assert stats.total == 1 and stats.by_layer["working"] == 1 and stats.model == "hash-384/384"


def test_a_different_model_is_refused_until_reindexed(
    store: DataLayer, clock: ManualClock, real_model: Embedder
) -> None:
    hashed = MemoryContext(store=store, embedder=create_embedder("hash"), clock=clock)
    memory_id = add(hashed, BCRYPT)
    onnx = MemoryContext(store=store, embedder=real_model, clock=clock)
    with pytest.raises(Conflict, match="jetpack memory reindex"):
        recall(onnx, "passwords")
    assert reindex(onnx) == 1
    assert [h.id for h in recall(onnx, "how are user passwords stored?", k=1)] == [memory_id]


def test_bad_input_is_refused_and_nothing_is_stored(mem: MemoryContext, store: DataLayer) -> None:
    for call in (
        lambda: recall(mem, "   "),
        lambda: recall(mem, "x", k=0),
        lambda: recall(mem, "x", k=10_000),
        lambda: recall(mem, "x", min_score=float("nan")),
        lambda: remember(mem, "a", NewMemory(content="x", layer=Layer.EPISODIC, ttl_seconds=5)),
    ):
        with pytest.raises(InvalidInput):
            call()
    for fields in (
        {"content": "x" * 1_000_000},
        {"content": "x", "layer": "semantic"},
        {"content": "x", "importance": float("nan")},
        {"content": "x", "importance": 1.5},
        {"content": ""},
    ):
        with pytest.raises(ValidationError):
            NewMemory.model_validate(fields)
    assert store.query("SELECT count(*) AS n FROM memories")[0]["n"] == 0


# ---- the work loop ------------------------------------------------------------------------------

SIMILAR_TASKS = [
    ("Add a REST endpoint for invoices", "Validated the request body with a pydantic model before touching the DB."),
    ("Add a REST endpoint for customers", "Validated the request body with a pydantic model before any database call."),
    (
        "Add a REST endpoint for orders",
        "Request bodies are validated with a pydantic model before the database is touched.",
    ),
]


def finish(queue: QueueContext, mem: MemoryContext, title: str, summary: str, agent: str = "alice") -> str:
    actor = Actor(agent)
    task_id = create_tasks(queue, actor, [NewTask(title=title)])[0].id
    claim_task(queue, actor, task_id)
    task = complete_task(queue, actor, task_id, summary)
    remember_outcome(mem, agent, task, summary, [])
    return task_id


def test_completed_tasks_sharing_an_approach_teach_a_procedure(queue: QueueContext, real: MemoryContext) -> None:
    for title, summary in SIMILAR_TASKS:
        finish(queue, real, title, summary)
    finish(queue, real, "Fix the flaky websocket test", "Raised the timeout; the server was slow to start in CI.")
    procedures = real.store.query("SELECT id, content, confidence FROM memories WHERE layer = 'procedural'")
    assert len(procedures) == 1
    learned = get_memory(real, procedures[0]["id"])
    assert learned.content.startswith("When working on tasks like “Add a REST endpoint")
    assert "pydantic" in learned.content
    outcome_ids = {
        r["id"]
        for r in real.store.query(
            "SELECT m.id FROM memories m JOIN tasks t ON t.id = m.task_id WHERE t.title LIKE 'Add a REST endpoint%'"
        )
    }
    assert set(learned.evidence) == outcome_ids
    before = learned.confidence or 0.0
    assert (rate_memory(real, learned.id, helpful=False).confidence or 0.0) == pytest.approx(before - 0.2)


def test_claim_brings_relevant_memories_and_outcomes_adjust_the_procedures_given(
    queue: QueueContext, real: MemoryContext
) -> None:
    procedure = add(
        real, "When adding a REST endpoint, validate the request body with a pydantic model.", layer=Layer.PROCEDURAL
    )
    add(real, BCRYPT)
    actor = Actor("bob")
    task_id = create_tasks(queue, actor, [NewTask(title="Add a REST endpoint for refunds")])[0].id
    task = claim_task(queue, actor, task_id).task
    assert task is not None
    given = memories_for_task(real, "bob", task)
    assert given and given[0].id == procedure
    before = get_memory(real, procedure).confidence or 0.0
    assert adjust_for_task_result(real, task_id, succeeded=False) == 1
    assert get_memory(real, procedure).confidence == pytest.approx(before - 0.1)
