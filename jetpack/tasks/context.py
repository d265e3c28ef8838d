"""What every task service function needs: the store, the clock, the task and swarm settings."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from jetpack.clock import Clock, SystemClock
from jetpack.config import SwarmSettings, TaskSettings
from jetpack.errors import NotFound
from jetpack.store import DataLayer, Row
from jetpack.tasks.ids import check_task_id


@dataclass(frozen=True)
class QueueContext:
    store: DataLayer
    settings: TaskSettings = field(default_factory=TaskSettings)
    clock: Clock = field(default_factory=SystemClock)
    swarm: SwarmSettings = field(default_factory=SwarmSettings)  # the claim strategy (jetpack/swarm)

    def now(self) -> int:
        return self.clock.now_ms()

    def lease_ms(self) -> int:
        return int(self.settings.lease_seconds * 1000)

    def rows_by_id(self, ids: Sequence[str], columns: str = "*") -> dict[str, Row]:
        if not ids:
            return {}
        rows = self.store.query(
            f"SELECT {columns} FROM tasks WHERE id IN (SELECT value FROM json_each(:ids))",
            {"ids": json.dumps(list(ids))},
        )
        return {row["id"]: row for row in rows}

    def require_row(self, task_id: str) -> Row:
        check_task_id(task_id)
        rows = self.store.query("SELECT * FROM tasks WHERE id = :id", {"id": task_id})
        if not rows:
            raise NotFound(f"no task {task_id}; call list_tasks to see existing ids")
        return rows[0]
