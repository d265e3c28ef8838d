"""Quality gate use cases: record a baseline, check against it, gate a finished task.

Snapshots live in the DataLayer (``quality_snapshots``), so every process of the swarm (and
``jetpack quality show``) sees the same baseline and history.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from jetpack.actor import Actor
from jetpack.clock import Clock, SystemClock
from jetpack.config import QualitySettings, Settings
from jetpack.errors import Conflict, NotFound
from jetpack.quality.compare import check_against_baseline
from jetpack.quality.model import (
    GateResult,
    QualitySnapshot,
    QualityVerdict,
    Regression,
    SnapshotKind,
    regression_reason,
)
from jetpack.quality.runner import git_state, run_gates
from jetpack.store import DataLayer, Row
from jetpack.tasks import FailMode, QueueContext, Task, TaskState, fail_task
from jetpack.tasks.model import HELD_STATES


@dataclass(frozen=True)
class QualityContext:
    store: DataLayer
    project_dir: Path
    settings: QualitySettings = field(default_factory=QualitySettings)
    clock: Clock = field(default_factory=SystemClock)

    @classmethod
    def for_settings(cls, settings: Settings, store: DataLayer, clock: Clock | None = None) -> QualityContext:
        return cls(
            store=store, project_dir=settings.project_dir, settings=settings.quality, clock=clock or SystemClock()
        )

    def configured(self) -> bool:
        return bool(self.settings.commands())


class QualityCheck(BaseModel):
    snapshot: QualitySnapshot
    baseline: QualitySnapshot
    verdict: QualityVerdict


class TaskGate(BaseModel):
    """What the gate did for a finished task."""

    passed: bool
    check: QualityCheck | None = None  # None when no quality commands are configured
    task: Task | None = None  # the task after a failed gate (its attempt failed: requeued, or failed)
    reason: str | None = None  # the failure reason the task got
    note: str | None = None


def _require_commands(ctx: QualityContext) -> None:
    if not ctx.configured():
        raise Conflict(
            "no quality commands are configured; add them to [quality] in .jetpack/config.toml, "
            'e.g. tests = "pytest -q" and lint = "ruff check --output-format concise ."'
        )


def record_baseline(ctx: QualityContext, actor: str, *, cwd: Path | None = None) -> QualitySnapshot:
    """Run every configured gate and keep the results as the baseline later checks compare with."""
    _require_commands(ctx)
    directory = cwd or ctx.project_dir
    commit = git_state(directory)  # before the commands run: what they ran on
    results = run_gates(ctx.settings, directory)
    return _store(ctx, SnapshotKind.BASELINE, directory, commit, actor, results)


def ensure_baseline(ctx: QualityContext, actor: str, *, cwd: Path | None = None) -> QualitySnapshot | None:
    """The latest baseline, recording one first if there is none (None when nothing is configured).
    For a swarm starting up: call it before workers change anything."""
    if not ctx.configured():
        return None
    return latest_baseline(ctx) or record_baseline(ctx, actor, cwd=cwd)


def run_check(ctx: QualityContext, actor: str, *, cwd: Path | None = None, task_id: str | None = None) -> QualityCheck:
    """Run every configured gate, compare with the latest baseline, keep the snapshot and the verdict."""
    _require_commands(ctx)
    baseline = latest_baseline(ctx)
    if baseline is None:
        raise Conflict("no quality baseline yet; record one with `jetpack quality baseline` before checking")
    directory = cwd or ctx.project_dir
    commit = git_state(directory)
    results = run_gates(ctx.settings, directory)
    verdict = check_against_baseline(baseline, results, coverage_drop_points=ctx.settings.coverage_drop_points)
    snapshot = _store(
        ctx, SnapshotKind.CHECK, directory, commit, actor, results, task_id=task_id, baseline=baseline, verdict=verdict
    )
    return QualityCheck(snapshot=snapshot, baseline=baseline, verdict=verdict)


def gate_task(
    ctx: QualityContext, queue: QueueContext, actor: Actor, task_id: str, *, cwd: Path | None = None
) -> TaskGate:
    """The gate for a task a worker has finished, run before the task is completed.

    On a regression the task's attempt fails (``fail_task``, mode retry) with the details as its
    reason: it is requeued for another try, or failed once its attempts are used up. ``actor``
    must hold the task (the worker), or be an operator. A task that is no longer held (already
    completed, released) is left as it is; the result says so.
    """
    if not ctx.configured():
        return TaskGate(passed=True, note="no quality commands are configured")
    check = run_check(ctx, actor.name, cwd=cwd, task_id=task_id)
    if check.verdict.passed:
        return TaskGate(passed=True, check=check)
    reason = regression_reason(check.verdict, check.baseline)
    state = TaskState(queue.require_row(task_id)["state"])
    if state not in HELD_STATES:
        return TaskGate(passed=False, check=check, reason=reason, note=f"{task_id} is {state.value}; not failed")
    task = fail_task(queue, actor, task_id, reason, FailMode.RETRY)
    return TaskGate(passed=False, check=check, task=task, reason=reason)


def latest_baseline(ctx: QualityContext) -> QualitySnapshot | None:
    rows = ctx.store.query("SELECT * FROM quality_snapshots WHERE kind = 'baseline' ORDER BY id DESC LIMIT 1")
    return _snapshot(rows[0]) if rows else None


def recent_snapshots(ctx: QualityContext, *, limit: int = 20, task_id: str | None = None) -> list[QualitySnapshot]:
    if task_id is not None:
        rows = ctx.store.query(
            "SELECT * FROM quality_snapshots WHERE task_id = :task ORDER BY id DESC LIMIT :limit",
            {"task": task_id, "limit": limit},
        )
    else:
        rows = ctx.store.query("SELECT * FROM quality_snapshots ORDER BY id DESC LIMIT :limit", {"limit": limit})
    return [_snapshot(row) for row in rows]


def get_snapshot(ctx: QualityContext, snapshot_id: int) -> QualitySnapshot:
    rows = ctx.store.query("SELECT * FROM quality_snapshots WHERE id = :id", {"id": snapshot_id})
    if not rows:
        raise NotFound(f"no quality snapshot #{snapshot_id}; `jetpack quality show` lists the recent ones")
    return _snapshot(rows[0])


def _store(
    ctx: QualityContext,
    kind: SnapshotKind,
    directory: Path,
    commit_state: tuple[str | None, bool],
    actor: str,
    results: list[GateResult],
    *,
    task_id: str | None = None,
    baseline: QualitySnapshot | None = None,
    verdict: QualityVerdict | None = None,
) -> QualitySnapshot:
    commit, dirty = commit_state
    rows = ctx.store.execute(
        """INSERT INTO quality_snapshots(kind, commit_sha, dirty, directory, task_id, actor, results,
            baseline_id, passed, regressions, notes, created_at)
        VALUES (:kind, :commit, :dirty, :directory, :task, :actor, :results, :baseline, :passed, :regressions,
            :notes, :now)
        RETURNING *""",
        {
            "kind": kind.value,
            "commit": commit,
            "dirty": int(dirty),
            "directory": str(directory),
            "task": task_id,
            "actor": actor,
            "results": json.dumps([r.model_dump(mode="json") for r in results]),
            "baseline": baseline.id if baseline else None,
            "passed": None if verdict is None else int(verdict.passed),
            "regressions": json.dumps([r.model_dump(mode="json") for r in verdict.regressions] if verdict else []),
            "notes": json.dumps(verdict.notes if verdict else []),
            "now": ctx.clock.now_ms(),
        },
    )
    return _snapshot(rows[0])


def _snapshot(row: Row) -> QualitySnapshot:
    return QualitySnapshot(
        id=row["id"],
        kind=SnapshotKind(row["kind"]),
        commit=row["commit_sha"],
        dirty=bool(row["dirty"]),
        directory=row["directory"],
        task_id=row["task_id"],
        actor=row["actor"],
        results=[GateResult.model_validate(r) for r in json.loads(row["results"])],
        baseline_id=row["baseline_id"],
        passed=None if row["passed"] is None else bool(row["passed"]),
        regressions=[Regression.model_validate(r) for r in json.loads(row["regressions"])],
        notes=json.loads(row["notes"]),
        created_at=datetime.fromtimestamp(row["created_at"] / 1000, tz=UTC),
    )
