"""What a database offers beyond shared SQL, read from its schema (both adapters use this)."""

from __future__ import annotations

import json

from jetpack.store.port import DataLayer, StoreFeatures

_DERIVED_INDEXES = ("messages_fts", "memories_fts", "memories_vec")


def detect_features(store: DataLayer, *, kind: str, engine: str, vector_functions: bool) -> StoreFeatures:
    """Full-text search is native when the FTS5 migrations ran (engines without FTS5 skip them);
    vector search uses sqlite-vec when its index exists, else the engine's vector functions."""
    rows = store.query(
        "SELECT name FROM sqlite_master WHERE name IN (SELECT value FROM json_each(:names))",
        {"names": json.dumps(_DERIVED_INDEXES)},
    )
    present = {r["name"] for r in rows}
    engine_vectors = "libsql" if vector_functions else "scan"
    return StoreFeatures(
        kind=kind,
        engine=engine,
        full_text={"messages_fts", "memories_fts"} <= present,
        vectors="sqlite-vec" if "memories_vec" in present else engine_vectors,
    )
