"""Quality gates: the project's own commands (tests, lint, types, build, coverage), a stored
baseline, and checks that fail a task when it makes things worse. See docs/quality.md.
"""

from jetpack.quality.compare import check_against_baseline
from jetpack.quality.model import GateResult, QualitySnapshot, QualityVerdict, Regression, SnapshotKind
from jetpack.quality.runner import run_gate, run_gates
from jetpack.quality.service import (
    QualityCheck,
    QualityContext,
    TaskGate,
    ensure_baseline,
    gate_task,
    get_snapshot,
    latest_baseline,
    recent_snapshots,
    record_baseline,
    run_check,
)

__all__ = [
    "GateResult",
    "QualityCheck",
    "QualityContext",
    "QualitySnapshot",
    "QualityVerdict",
    "Regression",
    "SnapshotKind",
    "TaskGate",
    "check_against_baseline",
    "ensure_baseline",
    "gate_task",
    "get_snapshot",
    "latest_baseline",
    "recent_snapshots",
    "record_baseline",
    "run_check",
    "run_gate",
    "run_gates",
]
