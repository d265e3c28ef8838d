"""Recall: rank memories by meaning, let exact words help, weigh importance, recency and confidence.

The score of a candidate memory m for query q:

    relevance = cos(q, m)                                      exact, on the stored float vectors
    keyword   = 1 / (1 + rank of m among full-text matches)    0 when the words do not match
    boost     = (IDENTIFIER_BOOST if q has identifier-like tokens else WORD_BOOST) × keyword
    score     = (relevance + boost) × (0.9 + 0.2 × importance) × (1 + 0.1 × recency) × trust

where recency = exp(−days since last use / 30) and trust = 0.75 + 0.5 × confidence for
procedural memory (1 otherwise). Candidates are the vector index's nearest plus the top
full-text matches; similarity decides, words only nudge — unless the query names an identifier
(snake_case, dotted.names, paths, CAPS, numbers, camelCase, --flags, HAR-812), where an exact word
match matters most. The weights and the detector were chosen on the evaluation set in
``benchmarks/memory_eval.json``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

from jetpack.clock import to_datetime
from jetpack.errors import InvalidInput
from jetpack.lazy import np
from jetpack.memory.context import MemoryContext
from jetpack.memory.model import Layer, MemoryHit, snippet
from jetpack.memory.writing import vector_of
from jetpack.store import Row, Statement
from jetpack.store.word_scan import whole_words, words_found_sql

QUERY_MAX = 2_000
K_MAX = 50
WORD_BOOST = 0.08
IDENTIFIER_BOOST = 0.35
FTS_CANDIDATES = 50
FTS_MATCH_BUDGET = 2_000  # memories the full-text query may match (and bm25 sort) at most
SCAN_CANDIDATES = 500  # without FTS5: memories holding the most query words, re-ranked by whole words
FILTERED_EXACT_LIMIT = 5_000  # a filter (task, tags) this narrow is scored exactly, without the index

_WORD = re.compile(r"\w+", re.UNICODE)
# snake_case, dotted.names, paths, urls; hyphenated tokens only with a capital or digit (HAR-812,
# X-Hub-Signature, not sign-ins); CAPS; anything with a digit; camelCase / PascalCase; --flags.
_IDENTIFIER = re.compile(
    r"[A-Za-z0-9]+(?:[_./:][A-Za-z0-9]+)+|\b(?=[\w-]*[A-Z0-9])[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+"
    r"|\b[A-Z]{3,}\b|\b\w*\d\w*\b|\b[a-z]+[A-Z]\w*|\b[A-Z][a-z0-9]+[A-Z]\w*|(?<![\w-])--?[A-Za-z][\w-]*"
)


def is_identifier_query(query: str) -> bool:
    return bool(_IDENTIFIER.search(query))


def recall(
    ctx: MemoryContext,
    query: str,
    *,
    layers: Sequence[Layer] | None = None,
    k: int = 5,
    task_id: str | None = None,
    tags: Sequence[str] | None = None,
    min_score: float = 0.0,
    count_access: bool = True,
    known_not_empty: bool = False,
) -> list[MemoryHit]:
    query = query.strip()
    if not query:
        raise InvalidInput("query is empty; describe what you are looking for, e.g. 'how are passwords stored'")
    if len(query) > QUERY_MAX:
        raise InvalidInput(f"query is {len(query)} characters; keep it under {QUERY_MAX}")
    if not 1 <= k <= K_MAX:
        raise InvalidInput(f"k must be between 1 and {K_MAX}, not {k}")
    if not (0.0 <= min_score <= 2.0) or math.isnan(min_score):
        raise InvalidInput(f"min_score must be between 0 and 2, not {min_score}")
    chosen = list(dict.fromkeys(layers)) if layers else list(Layer)
    ctx.check_model()
    if not known_not_empty and not ctx.store.query("SELECT 1 FROM memories LIMIT 1"):
        return []  # nothing stored: no need to load the model
    now = ctx.now()
    vector = ctx.embed_one(query)
    narrowed = _filtered_ids(ctx, task_id, tags)
    if narrowed is not None and len(narrowed) <= FILTERED_EXACT_LIMIT:
        candidates = narrowed
    else:
        candidates = set(ctx.vectors.candidates(vector, chosen, max(4 * k, 50)))
        if narrowed is not None:
            candidates &= narrowed
    keyword_rank = _keyword_ranks(ctx, query, narrowed)
    candidates |= set(keyword_rank)
    rows = _rows(ctx, candidates, chosen, now)
    if not rows:
        return []
    similarity = np.stack([vector_of(r) for r in rows]) @ vector
    boost = IDENTIFIER_BOOST if is_identifier_query(query) else WORD_BOOST
    scored = []
    for row, sim in zip(rows, similarity, strict=True):
        rank = keyword_rank.get(row["id"])
        keyword = 0.0 if rank is None else 1.0 / (1 + rank)
        score = (float(sim) + boost * keyword) * _weight(row, now)
        if score >= min_score:
            scored.append((score, float(sim), rank is not None, row))
    scored.sort(key=lambda item: (-item[0], -item[3]["id"]))
    hits = [_hit(row, score, sim, matched) for score, sim, matched, row in scored[:k]]
    if count_access and hits:
        ctx.store.write(
            [
                Statement(
                    "UPDATE memories SET access_count = access_count + 1, last_accessed_at = :now "
                    "WHERE id IN (SELECT value FROM json_each(:ids))",
                    {"now": now, "ids": json.dumps([h.id for h in hits])},
                )
            ]
        )
    return hits


def _weight(row: Row, now: int) -> float:
    last_use = row["last_accessed_at"] or row["created_at"]
    recency = math.exp(-max(0, now - last_use) / (30 * 86_400_000))
    weight = (0.9 + 0.2 * row["importance"]) * (1 + 0.1 * recency)
    if row["layer"] == Layer.PROCEDURAL and row["confidence"] is not None:
        weight *= 0.75 + 0.5 * float(row["confidence"])
    return float(weight)


def _filtered_ids(ctx: MemoryContext, task_id: str | None, tags: Sequence[str] | None) -> set[int] | None:
    if task_id is None and not tags:
        return None
    conditions, params = [], {}
    if task_id is not None:
        conditions.append("task_id = :task")
        params["task"] = task_id
    for i, tag in enumerate(tags or []):
        conditions.append(f"id IN (SELECT memory_id FROM memory_tags WHERE tag = :tag{i})")
        params[f"tag{i}"] = tag.strip().lower()
    rows = ctx.store.query(f"SELECT id FROM memories WHERE {' AND '.join(conditions)}", params)
    return {r["id"] for r in rows}


def _keyword_ranks(ctx: MemoryContext, query: str, narrowed: set[int] | None) -> dict[int, int]:
    """Full-text matches (any of the query's selective words, best first) → their rank (a scan without FTS5)."""
    words = list(dict.fromkeys(_WORD.findall(query)))[:32]
    if not words:
        return {}
    if not ctx.has_full_text_index():
        return _scanned_ranks(ctx, words, narrowed)
    words = _selective(ctx, words)
    if not words:
        return {}
    match = " OR ".join(_phrase(w) for w in words)
    rows = ctx.store.query(
        "SELECT rowid AS id FROM memories_fts WHERE memories_fts MATCH :match ORDER BY bm25(memories_fts) LIMIT :n",
        {"match": match, "n": FTS_CANDIDATES},
    )
    ids = [r["id"] for r in rows if narrowed is None or r["id"] in narrowed]
    return {memory_id: rank for rank, memory_id in enumerate(ids)}


def _scanned_ranks(ctx: MemoryContext, words: list[str], narrowed: set[int] | None) -> dict[int, int]:
    """Without FTS5 (``tursodb``): memories holding the most of the words (as substrings, newest
    first among equals) are re-ranked by whole words, fewer other words first (as bm25 prefers)."""
    found, params = words_found_sql(["content"], words)
    rows = ctx.store.query(
        f"SELECT id, content FROM memories WHERE {found} > 0 ORDER BY {found} DESC, id DESC LIMIT :n",
        {**params, "n": SCAN_CANDIDATES},
    )
    scored = [
        (-whole_words(r["content"], words), len(r["content"]), -r["id"], r["id"])
        for r in rows
        if narrowed is None or r["id"] in narrowed
    ]
    ranked = [memory_id for matched, _, _, memory_id in sorted(scored) if matched < 0][:FTS_CANDIDATES]
    return {memory_id: rank for rank, memory_id in enumerate(ranked)}


def _selective(ctx: MemoryContext, words: list[str]) -> list[str]:
    """The query's words that can tell memories apart: rarest first, while the memories holding them
    add up to at most FTS_MATCH_BUDGET (ranking sorts every match, and a word that half the store
    holds ranks nothing). Words no memory holds are left out. Counting stops at the budget, so a
    common word costs no more to count than a rare one."""
    probes = " UNION ALL ".join(
        f"SELECT {i} AS i, (SELECT count(*) FROM (SELECT rowid FROM memories_fts WHERE memories_fts MATCH :w{i} "
        "LIMIT :cap)) AS n"
        for i in range(len(words))
    )
    params: dict[str, object] = {f"w{i}": _phrase(w) for i, w in enumerate(words)}
    params["cap"] = FTS_MATCH_BUDGET + 1
    counts = {words[r["i"]]: int(r["n"]) for r in ctx.store.query(probes, params)}
    chosen, total = [], 0
    for word in sorted((w for w in words if counts[w] > 0), key=lambda w: counts[w]):
        if total + counts[word] > FTS_MATCH_BUDGET:
            break
        chosen.append(word)
        total += counts[word]
    return chosen


def _phrase(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


def _rows(ctx: MemoryContext, ids: set[int], layers: list[Layer], now: int) -> list[Row]:
    if not ids:
        return []
    return ctx.store.query(
        """SELECT id, layer, content, tags, task_id, importance, confidence, created_at, last_accessed_at, embedding
        FROM memories WHERE id IN (SELECT value FROM json_each(:ids))
          AND layer IN (SELECT value FROM json_each(:layers)) AND (expires_at IS NULL OR expires_at > :now)""",
        {"ids": json.dumps(sorted(ids)), "layers": json.dumps([layer.value for layer in layers]), "now": now},
    )


def _hit(row: Row, score: float, similarity: float, keyword: bool) -> MemoryHit:
    return MemoryHit(
        id=row["id"],
        layer=Layer(row["layer"]),
        snippet=snippet(row["content"]),
        score=round(score, 4),
        similarity=round(similarity, 4),
        keyword_match=keyword,
        tags=json.loads(row["tags"]),
        task_id=row["task_id"],
        confidence=row["confidence"],
        created_at=to_datetime(row["created_at"]),
    )
