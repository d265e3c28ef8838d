"""Cards: the board's view of a leaf task, read by the board, by ``/api/cards`` and by the live feed
(which sends the cards of the tasks each batch of events touched, so pages need not ask)."""

from __future__ import annotations

import json
from typing import Any

from jetpack.store import DataLayer, Row

CARD_COLUMNS = (
    "id, title, state, priority, assignee, parent_id, lease_expires_at, blocked_reason, labels, skills, "
    "attempts, max_attempts, updated_at"
)
LEAF = "NOT EXISTS (SELECT 1 FROM tasks c WHERE c.parent_id = t.id)"


def card_json(row: Row) -> dict[str, Any]:
    card = dict(row)
    card["labels"] = json.loads(row["labels"])
    card["skills"] = json.loads(row["skills"])
    return card


def cards(store: DataLayer, ids: list[str]) -> dict[str, Any]:
    rows = store.query(
        f"SELECT {CARD_COLUMNS} FROM tasks t WHERE {LEAF} AND id IN (SELECT value FROM json_each(:ids))",
        {"ids": json.dumps(ids)},
    )
    found = {r["id"] for r in rows}
    return {"cards": [card_json(r) for r in rows], "missing": [i for i in ids if i not in found]}


def card_of(store: DataLayer, task_id: str) -> dict[str, Any] | None:
    rows = cards(store, [task_id])["cards"]
    return rows[0] if rows else None
