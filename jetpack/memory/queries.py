"""Reading memory records directly: one memory, a page of them, the store's statistics."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from jetpack.clock import to_datetime
from jetpack.errors import InvalidInput, NotFound
from jetpack.memory.context import MemoryContext
from jetpack.memory.model import Layer, MemoryView
from jetpack.store import Row

MAX_PAGE = 200


class MemoryStats(BaseModel):
    total: int
    by_layer: dict[str, int]
    expired_pending_sweep: int
    model: str | None
    embedder: str
    embedder_loaded: bool
    vector_index: str
    full_text: bool


def view_from_row(row: Row, evidence: list[int] | None = None) -> MemoryView:
    return MemoryView(
        id=row["id"],
        layer=Layer(row["layer"]),
        content=row["content"],
        tags=json.loads(row["tags"]),
        task_id=row["task_id"],
        agent=row["agent"],
        source=row["source"],
        importance=row["importance"],
        confidence=row["confidence"],
        access_count=row["access_count"],
        created_at=to_datetime(row["created_at"]),
        last_accessed_at=to_datetime(row["last_accessed_at"]),
        expires_at=to_datetime(row["expires_at"]),
        evidence=evidence or [],
    )


def get_memory(ctx: MemoryContext, memory_id: int) -> MemoryView:
    rows = ctx.store.query("SELECT * FROM memories WHERE id = :id", {"id": memory_id})
    if not rows:
        raise NotFound(f"no memory {memory_id}; recall_memory or `jetpack memory list` shows ids")
    evidence = ctx.store.query(
        "SELECT evidence_id FROM memory_evidence WHERE memory_id = :id ORDER BY evidence_id", {"id": memory_id}
    )
    return view_from_row(rows[0], [r["evidence_id"] for r in evidence])


def list_memories(
    ctx: MemoryContext,
    *,
    layer: Layer | None = None,
    task_id: str | None = None,
    tag: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[MemoryView]:
    """Newest first; page with ``before_id`` (the last id of the previous page)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}, not {limit}")
    where = ["(expires_at IS NULL OR expires_at > :now)"]
    params: dict[str, Any] = {"now": ctx.now(), "limit": limit}
    if layer is not None:
        where.append("layer = :layer")
        params["layer"] = layer.value
    if task_id is not None:
        where.append("task_id = :task")
        params["task"] = task_id
    if tag is not None:
        where.append("id IN (SELECT memory_id FROM memory_tags WHERE tag = :tag)")
        params["tag"] = tag.lower()
    if before_id is not None:
        where.append("id < :before")
        params["before"] = before_id
    rows = ctx.store.query(f"SELECT * FROM memories WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT :limit", params)
    return [view_from_row(r) for r in rows]


def memory_stats(ctx: MemoryContext) -> MemoryStats:
    counts = {r["layer"]: r["n"] for r in ctx.store.query("SELECT layer, count(*) AS n FROM memories GROUP BY layer")}
    expired = ctx.store.query(
        "SELECT count(*) AS n FROM memories WHERE expires_at IS NOT NULL AND expires_at <= :now", {"now": ctx.now()}
    )[0]["n"]
    return MemoryStats(
        total=sum(counts.values()),
        by_layer={layer.value: counts.get(layer.value, 0) for layer in Layer},
        expired_pending_sweep=expired,
        model=ctx.recorded_model(),
        embedder=ctx.model_record(),
        embedder_loaded=ctx.embedder.loaded(),
        vector_index=ctx.vectors.name,
        full_text=bool(ctx.store.query("SELECT 1 FROM sqlite_master WHERE name = 'memories_fts'")),
    )
