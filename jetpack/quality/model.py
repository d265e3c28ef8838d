"""Quality gate shapes: one command's result, a stored snapshot, and a verdict against the baseline."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel


class SnapshotKind(StrEnum):
    BASELINE = "baseline"
    CHECK = "check"


class GateResult(BaseModel):
    """What one configured command did. Counts are None when its output did not show them."""

    gate: str  # build, lint, types, tests, coverage
    command: str
    exit_code: int | None = None  # None: it timed out or could not start
    timed_out: bool = False
    duration_ms: int = 0
    passed: int | None = None  # tests that passed
    failures: int | None = None  # failed or erroring tests, lint errors, type errors
    coverage: float | None = None  # total coverage, percent
    items: list[str] = []  # the failing tests or diagnostics (without line numbers), when the output lists them
    output_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def itemised(self) -> bool:
        """Whether ``items`` lists every failure, so "new" ones can be told from legacy ones."""
        return self.failures is not None and len(self.items) == self.failures

    def describe(self) -> str:
        """A few words for a table: "3 failed, 40 passed", "12 errors", "ok", "exit 2"."""
        if self.timed_out:
            return f"timed out after {self.duration_ms / 1000:.0f} s"
        parts: list[str] = []
        if self.gate == "tests" and (self.failures is not None or self.passed is not None):
            if self.failures:
                parts.append(f"{self.failures} failed")
            parts.append(f"{self.passed or 0} passed")
        elif self.failures is not None and self.gate != "build":
            parts.append(f"{self.failures} error{'s' if self.failures != 1 else ''}")
        if self.coverage is not None:
            parts.append(f"coverage {self.coverage:g}%")
        if self.exit_code is None:
            parts.append("did not run")
        elif not parts or (self.exit_code != 0 and not self.failures):
            parts.append("ok" if self.exit_code == 0 else f"exit {self.exit_code}")
        return ", ".join(parts)


class Regression(BaseModel):
    gate: str
    message: str
    new_items: list[str] = []  # the new failing tests or diagnostics, when known


class QualityVerdict(BaseModel):
    passed: bool
    regressions: list[Regression] = []
    notes: list[str] = []  # what did not block: legacy failures, fixes, gates without a baseline


class QualitySnapshot(BaseModel):
    id: int
    kind: SnapshotKind
    commit: str | None = None
    dirty: bool = False
    directory: str
    task_id: str | None = None
    actor: str
    results: list[GateResult]
    baseline_id: int | None = None
    passed: bool | None = None  # checks only
    regressions: list[Regression] = []
    notes: list[str] = []
    created_at: datetime

    def result(self, gate: str) -> GateResult | None:
        return next((r for r in self.results if r.gate == gate), None)


REASON_MAX = 4000


def regression_reason(verdict: QualityVerdict, baseline: QualitySnapshot) -> str:
    """The failure reason a task gets: what regressed, against which baseline (within a note's size)."""
    commit = f", commit {baseline.commit[:12]}" if baseline.commit else ""
    lines = [f"quality gate: regression against baseline #{baseline.id}{commit}"]
    for regression in verdict.regressions:
        lines.append(f"- {regression.gate}: {regression.message}")
        lines += [f"    {item}" for item in regression.new_items[:10]]
        if len(regression.new_items) > 10:
            lines.append(f"    … and {len(regression.new_items) - 10} more")
    text = "\n".join(lines)
    return text if len(text) <= REASON_MAX else text[: REASON_MAX - 1] + "…"
