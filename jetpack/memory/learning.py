"""Procedural learning without an LLM: when similar tasks were done the same way, say so.

After each task outcome is remembered, its nearest episodic outcomes (at most ``CLUSTER_MAX``, cosine
≥ ``CLUSTER_SIMILARITY``) form a cluster. If at least ``MIN_EVIDENCE`` of them share an approach — a sentence of
their summaries or learnings that each of them states in its own words (cosine ≥
``APPROACH_SIMILARITY``) — Jetpack writes (or strengthens) a procedural memory:

    When <the most typical task of the cluster>: <the most shared approach sentence>.

Its confidence starts from how many outcomes support it and how alike they are, links to them as
evidence, rises when agents rate it helpful or complete tasks it was given with, and falls when
they rate it unhelpful or fail such tasks. Everything here is extractive: sentences are chosen,
never written.
"""

from __future__ import annotations

import json
import re

from jetpack.errors import NotFound
from jetpack.lazy import np
from jetpack.memory.context import MemoryContext
from jetpack.memory.model import Layer, MemoryView
from jetpack.memory.queries import get_memory
from jetpack.memory.writing import content_hash, vector_of
from jetpack.store import Row, Statement

CLUSTER_SIMILARITY = 0.6
APPROACH_SIMILARITY = 0.7
MIN_EVIDENCE = 3
CLUSTER_MAX = 20  # the nearest outcomes are evidence enough, and each costs its sentences' embeddings
OUTCOME_TAG = "outcome"
FAILURE_TAG = "failure"

_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")


def learn_from_outcome(ctx: MemoryContext, outcome_id: int) -> int | None:
    """Look for a shared approach around this outcome; write or strengthen a procedural memory.
    Returns the procedural memory's id, or None when there is nothing (yet) to learn."""
    outcome = _row(ctx, outcome_id)
    cluster = _cluster(ctx, outcome)
    if len(cluster) < MIN_EVIDENCE:
        return None
    approach, supporters = _shared_approach(ctx, cluster)
    if approach is None or len(supporters) < MIN_EVIDENCE:
        return None
    situation = _typical_task(ctx, cluster)
    content = f"When {situation}: {approach}"
    cohesion = _cohesion(cluster)
    confidence = round(min(0.9, 0.3 + 0.1 * len(supporters) + 0.3 * cohesion), 3)
    existing = _procedural_for(ctx, [r["id"] for r in supporters])
    if existing is not None:
        _link(ctx, existing, supporters, confidence)
        return existing
    return _write(ctx, content, supporters, confidence)


def _row(ctx: MemoryContext, memory_id: int) -> Row:
    rows = ctx.store.query("SELECT * FROM memories WHERE id = :id", {"id": memory_id})
    if not rows:
        raise NotFound(f"no memory {memory_id}")
    return rows[0]


def _cluster(ctx: MemoryContext, outcome: Row) -> list[Row]:
    vector = vector_of(outcome)
    ids = set(ctx.vectors.candidates(vector, [Layer.EPISODIC], 50))
    rows = ctx.store.query(
        "SELECT * FROM memories WHERE id IN (SELECT value FROM json_each(:ids)) AND layer = 'episodic' "
        "AND EXISTS (SELECT 1 FROM memory_tags t WHERE t.memory_id = memories.id AND t.tag = :tag)",
        {"ids": json.dumps(sorted(ids | {outcome["id"]})), "tag": OUTCOME_TAG},
    )
    scored = sorted(((float(vector_of(r) @ vector), r) for r in rows), key=lambda pair: -pair[0])
    return [r for score, r in scored[:CLUSTER_MAX] if score >= CLUSTER_SIMILARITY]


def sentences(text: str) -> list[str]:
    body = text.split(": ", 1)[1] if text.startswith("Task ") and ": " in text else text
    return [s.strip().rstrip(".") for s in _SENTENCE.split(body) if len(s.strip()) >= 12]


def _shared_approach(ctx: MemoryContext, cluster: list[Row]) -> tuple[str | None, list[Row]]:
    """The sentence stated (in some words) by the most outcomes of the cluster, and those outcomes."""
    owners: list[int] = []
    found: list[str] = []
    for index, row in enumerate(cluster):
        learned = (
            ctx.store.query(
                "SELECT content FROM memories WHERE task_id = :task AND layer = 'episodic' AND id != :id "
                "AND EXISTS (SELECT 1 FROM memory_tags t WHERE t.memory_id = memories.id AND t.tag = 'learning')",
                {"task": row["task_id"], "id": row["id"]},
            )
            if row["task_id"]
            else []
        )
        for text in [row["content"], *(r["content"] for r in learned)]:
            for sentence in sentences(text):
                owners.append(index)
                found.append(sentence)
    if not found:
        return None, []
    vectors = ctx.embed_recent(found)
    similar = vectors @ vectors.T >= APPROACH_SIMILARITY
    best, best_support = None, set[int]()
    for i, sentence in enumerate(found):
        support = {owners[j] for j in np.flatnonzero(similar[i])}
        if len(support) > len(best_support) or (
            len(support) == len(best_support) and best and len(sentence) < len(best)
        ):
            best, best_support = sentence, support
    return best, [cluster[i] for i in sorted(best_support)]


def _typical_task(ctx: MemoryContext, cluster: list[Row]) -> str:
    vectors = np.stack([vector_of(r) for r in cluster])
    medoid = cluster[int(np.argmax((vectors @ vectors.T).sum(axis=1)))]
    title = None
    if medoid["task_id"]:
        rows = ctx.store.query("SELECT title FROM tasks WHERE id = :id", {"id": medoid["task_id"]})
        title = rows[0]["title"] if rows else None
    return f"working on tasks like “{title}”" if title else "doing similar work"


def _cohesion(cluster: list[Row]) -> float:
    vectors = np.stack([vector_of(r) for r in cluster])
    sims = vectors @ vectors.T
    n = len(cluster)
    return float((sims.sum() - n) / (n * (n - 1))) if n > 1 else 1.0


def _procedural_for(ctx: MemoryContext, evidence: list[int]) -> int | None:
    rows = ctx.store.query(
        "SELECT e.memory_id, count(*) AS shared FROM memory_evidence e JOIN memories m ON m.id = e.memory_id "
        "WHERE e.evidence_id IN (SELECT value FROM json_each(:ids)) AND m.layer = 'procedural' "
        "GROUP BY e.memory_id ORDER BY shared DESC LIMIT 1",
        {"ids": json.dumps(evidence)},
    )
    return int(rows[0]["memory_id"]) if rows else None


def _link(ctx: MemoryContext, memory_id: int, supporters: list[Row], confidence: float) -> None:
    ctx.store.write(
        [
            Statement(
                "INSERT INTO memory_evidence(memory_id, evidence_id) SELECT :id, value FROM json_each(:ids) "
                "WHERE NOT EXISTS (SELECT 1 FROM memory_evidence e WHERE e.memory_id = :id "
                "AND e.evidence_id = json_each.value)",
                {"id": memory_id, "ids": json.dumps([r["id"] for r in supporters])},
            ),
            Statement(
                "UPDATE memories SET confidence = max(coalesce(confidence, 0), :c), updated_at = :now WHERE id = :id",
                {"id": memory_id, "c": confidence, "now": ctx.now()},
            ),
        ]
    )


def _write(ctx: MemoryContext, content: str, supporters: list[Row], confidence: float) -> int:
    vector = ctx.embed_one(content)
    now = ctx.now()
    tags = ["learned"]
    rows = ctx.store.write(
        [
            *ctx.record_model(),
            Statement(
                """INSERT INTO memories(layer, content, tags, source, importance, confidence, created_at, updated_at,
                    content_hash, model, embedding)
                VALUES ('procedural', :content, :tags, 'learned', 0.6, :confidence, :now, :now, :hash, :model, :e)
                RETURNING id""",
                {
                    "content": content,
                    "tags": json.dumps(tags),
                    "confidence": confidence,
                    "now": now,
                    "hash": content_hash(content),
                    "model": ctx.model_record(),
                    "e": vector.astype(np.float32).tobytes(),
                },
            ),
            Statement("INSERT INTO memory_tags(tag, memory_id) VALUES ('learned', (SELECT max(id) FROM memories))"),
            Statement(
                "INSERT INTO memory_evidence(memory_id, evidence_id) "
                "SELECT (SELECT max(id) FROM memories), value FROM json_each(:ids)",
                {"ids": json.dumps([r["id"] for r in supporters])},
            ),
            *ctx.vectors.insert_newest(Layer.PROCEDURAL, vector),
        ]
    )
    return int(rows[1][0]["id"])


def rate_memory(ctx: MemoryContext, memory_id: int, helpful: bool) -> MemoryView:
    """Feedback: a procedural memory's confidence moves (up 0.1, down 0.2); other memories' importance does."""
    row = _row(ctx, memory_id)
    column = "confidence" if row["layer"] == Layer.PROCEDURAL else "importance"
    delta = 0.1 if helpful else -0.2
    ctx.store.execute(
        f"UPDATE memories SET {column} = max(0.0, min(1.0, coalesce({column}, 0.5) + :d)), updated_at = :now "
        "WHERE id = :id",
        {"d": delta, "id": memory_id, "now": ctx.now()},
    )
    return get_memory(ctx, memory_id)


def adjust_for_task_result(ctx: MemoryContext, task_id: str, succeeded: bool) -> int:
    """Procedural memories handed out with a task gain a little when it succeeds and lose when it fails."""
    rows = ctx.store.execute(
        """UPDATE memories SET confidence = max(0.0, min(1.0, coalesce(confidence, 0.5) + :d)), updated_at = :now
        WHERE layer = 'procedural' AND id IN (SELECT memory_id FROM memory_uses WHERE task_id = :task)
        RETURNING id""",
        {"d": 0.03 if succeeded else -0.1, "task": task_id, "now": ctx.now()},
    )
    return len(rows)
