"""Writing memory: remember (merging near-duplicates), forget, sweep expired, re-embed everything."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable

from jetpack.clock import to_datetime
from jetpack.errors import InvalidInput, NotFound
from jetpack.lazy import np
from jetpack.memory.context import MemoryContext
from jetpack.memory.model import Layer, NewMemory, RememberResult
from jetpack.store import Row, Statement
from jetpack.tasks.ids import check_task_id

_SPACE = re.compile(r"\s+")


def content_hash(content: str) -> str:
    """Exact-duplicate key: the content with runs of whitespace collapsed."""
    return hashlib.sha256(_SPACE.sub(" ", content.strip()).encode()).hexdigest()


def vector_of(row: Row) -> np.ndarray:
    return np.frombuffer(row["embedding"], dtype=np.float32)


def remember(ctx: MemoryContext, agent: str | None, memory: NewMemory) -> RememberResult:
    """Store a memory, or merge it into an existing near-duplicate of the same layer."""
    ctx.check_model()
    if memory.ttl_seconds is not None and memory.layer is not Layer.WORKING:
        raise InvalidInput("ttl_seconds applies to working memory only; episodic and procedural memory is kept")
    if memory.task_id is not None:
        check_task_id(memory.task_id)
        if not ctx.store.query("SELECT 1 FROM tasks WHERE id = :id", {"id": memory.task_id}):
            raise NotFound(f"no task {memory.task_id}; call list_tasks to see existing ids")
    now = ctx.now()
    expires = (
        now + 1000 * (memory.ttl_seconds or ctx.settings.working_ttl_seconds) if memory.layer is Layer.WORKING else None
    )
    digest = content_hash(memory.content)
    same = ctx.store.query(
        "SELECT id FROM memories WHERE layer = :layer AND content_hash = :hash "
        "AND (expires_at IS NULL OR expires_at > :now) LIMIT 1",
        {"layer": memory.layer.value, "hash": digest, "now": now},
    )
    if same:
        return _merge(ctx, same[0]["id"], memory, expires)
    vector = ctx.embed_recent([memory.content])[0]  # a backlog drain embedded its batch already
    twin = _nearest_in_layer(ctx, vector, memory.layer, now)
    if twin is not None and twin[1] >= ctx.settings.duplicate_threshold:
        return _merge(ctx, twin[0], memory, expires)
    params = {
        "layer": memory.layer.value,
        "content": memory.content,
        "tags": json.dumps(memory.tags),
        "task": memory.task_id,
        "agent": agent,
        "source": memory.source,
        "importance": memory.importance,
        "confidence": 0.5 if memory.layer is Layer.PROCEDURAL else None,
        "now": now,
        "expires": expires,
        "hash": digest,
        "model": ctx.model_record(),
        "embedding": vector.astype(np.float32).tobytes(),
        "tag_list": json.dumps(memory.tags),
    }
    rows = ctx.store.write(
        [
            *ctx.record_model(),
            Statement(
                """INSERT INTO memories(layer, content, tags, task_id, agent, source, importance, confidence,
                    created_at, updated_at, expires_at, content_hash, model, embedding)
                VALUES (:layer, :content, :tags, :task, :agent, :source, :importance, :confidence,
                    :now, :now, :expires, :hash, :model, :embedding)
                RETURNING id""",
                params,
            ),
            Statement(
                "INSERT INTO memory_tags(tag, memory_id) SELECT value, (SELECT max(id) FROM memories) "
                "FROM json_each(:tag_list)",
                params,
            ),
            *ctx.vectors.insert_newest(memory.layer, vector),
        ]
    )
    ctx.saw_memory()
    return RememberResult(id=rows[1][0]["id"], layer=memory.layer, expires_at=to_datetime(expires))


def _nearest_in_layer(ctx: MemoryContext, vector: np.ndarray, layer: Layer, now: int) -> tuple[int, float] | None:
    ids = ctx.vectors.candidates(vector, [layer], 10)
    if not ids:
        return None
    rows = ctx.store.query(
        "SELECT id, embedding FROM memories WHERE id IN (SELECT value FROM json_each(:ids)) "
        "AND (expires_at IS NULL OR expires_at > :now)",
        {"ids": json.dumps(ids), "now": now},
    )
    if not rows:
        return None
    scores = np.stack([vector_of(r) for r in rows]) @ vector
    best = int(np.argmax(scores))
    return int(rows[best]["id"]), float(scores[best])


def _merge(ctx: MemoryContext, memory_id: int, memory: NewMemory, expires: int | None) -> RememberResult:
    now = ctx.now()
    params = {
        "id": memory_id,
        "importance": memory.importance,
        "tags": json.dumps(memory.tags),
        "now": now,
        "expires": expires,
    }
    rows = ctx.store.write(
        [
            Statement(
                """UPDATE memories SET importance = max(importance, :importance), access_count = access_count + 1,
                    last_accessed_at = :now, updated_at = :now,
                    tags = (SELECT json_group_array(value) FROM
                            (SELECT value FROM json_each(memories.tags) UNION SELECT value FROM json_each(:tags))),
                    expires_at = CASE WHEN expires_at IS NULL THEN NULL ELSE max(expires_at, coalesce(:expires, 0)) END
                WHERE id = :id RETURNING id, layer, expires_at""",
                params,
            ),
            Statement(
                "INSERT INTO memory_tags(tag, memory_id) SELECT value, :id FROM json_each(:tags) "
                "WHERE NOT EXISTS (SELECT 1 FROM memory_tags t WHERE t.tag = json_each.value AND t.memory_id = :id)",
                params,
            ),
        ]
    )
    row = rows[0][0]
    return RememberResult(
        id=row["id"], merged=True, layer=Layer(row["layer"]), expires_at=to_datetime(row["expires_at"])
    )


def forget(ctx: MemoryContext, ids: list[int]) -> list[int]:
    """Delete memories by id (any layer: forgetting is explicit). Returns the ids that existed."""
    if not ids:
        raise InvalidInput("ids is empty; give the ids of the memories to forget")
    return _delete(ctx, "id IN (SELECT value FROM json_each(:ids))", {"ids": json.dumps(sorted(set(ids)))})


def sweep_expired_memories(ctx: MemoryContext) -> int:
    """Delete working memories whose TTL has passed (they already stopped being recalled)."""
    return len(_delete(ctx, "expires_at IS NOT NULL AND expires_at <= :now", {"now": ctx.now()}))


def _delete(ctx: MemoryContext, where: str, params: dict[str, object]) -> list[int]:
    doomed = [r["id"] for r in ctx.store.query(f"SELECT id FROM memories WHERE {where}", params)]
    if not doomed:
        return []
    ids = json.dumps(doomed)
    ctx.store.write(
        [
            *ctx.vectors.delete(ids),
            Statement("DELETE FROM memory_tags WHERE memory_id IN (SELECT value FROM json_each(:ids))", {"ids": ids}),
            Statement(
                "DELETE FROM memory_evidence WHERE memory_id IN (SELECT value FROM json_each(:ids))", {"ids": ids}
            ),
            Statement("DELETE FROM memories WHERE id IN (SELECT value FROM json_each(:ids))", {"ids": ids}),
        ]
    )
    return doomed


def reindex(ctx: MemoryContext, progress: Callable[[int, int], None] | None = None, batch: int = 64) -> int:
    """Re-embed every memory with the configured model, rebuild the vector index, record the model."""
    total = int(ctx.store.query("SELECT count(*) AS n FROM memories")[0]["n"])
    done, last = 0, 0
    model = ctx.model_record()
    while True:
        rows = ctx.store.query(
            "SELECT id, content FROM memories WHERE id > :last ORDER BY id LIMIT :n", {"last": last, "n": batch}
        )
        if not rows:
            break
        vectors = ctx.embed([r["content"] for r in rows])
        ctx.store.write(
            [
                Statement(
                    "UPDATE memories SET embedding = :e, model = :model WHERE id = :id",
                    {"e": vectors[i].astype(np.float32).tobytes(), "model": model, "id": r["id"]},
                )
                for i, r in enumerate(rows)
            ]
        )
        done += len(rows)
        last = rows[-1]["id"]
        if progress:
            progress(done, total)
    ctx.store.write(
        [
            Statement(
                "INSERT INTO meta(key, value) VALUES ('memory_model', :model) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                {"model": model},
            )
        ]
    )
    ctx.vectors.rebuild()
    return done
