"""A check against the baseline: what got worse blocks, what was already broken does not.

Per gate, against the same gate in the baseline:

* it timed out, or failed to run, where the baseline finished → regression;
* the baseline passed (exit 0) and now it does not → regression (a broken build, a first lint error);
* more failures than the baseline (failed tests, lint errors, type errors) → regression;
* failures the baseline did not have, when both outputs list every failure, even if the count did
  not grow (a fixed legacy error does not pay for a new one) → regression;
* coverage more than ``coverage_drop_points`` below the baseline's → regression;
* anything else that fails was failing in the baseline already: a note, not a block.

A gate the baseline lacks (configured after it was recorded) is judged on its own: it must pass.
"""

from __future__ import annotations

from collections import Counter

from jetpack.quality.model import GateResult, QualitySnapshot, QualityVerdict, Regression


def check_against_baseline(
    baseline: QualitySnapshot | None, current: list[GateResult], *, coverage_drop_points: float = 1.0
) -> QualityVerdict:
    regressions: list[Regression] = []
    notes: list[str] = []
    for result in current:
        before = baseline.result(result.gate) if baseline is not None else None
        if before is None:
            if not result.ok:
                regressions.append(Regression(gate=result.gate, message=f"{_status(result)} (no baseline to compare)"))
            else:
                notes.append(f"{result.gate}: no baseline for this gate; it passes")
            continue
        found = _compare(before, result, coverage_drop_points)
        regressions += found
        if not found and not result.ok:
            notes.append(f"{result.gate}: {result.describe()}, as in the baseline ({before.describe()}): not blocking")
        elif not found and (result.failures or 0) < (before.failures or 0):
            notes.append(f"{result.gate}: {before.failures} → {result.failures} failures (better than the baseline)")
    return QualityVerdict(passed=not regressions, regressions=regressions, notes=notes)


def _status(result: GateResult) -> str:
    if result.timed_out:
        return f"timed out after {result.duration_ms / 1000:.0f} s"
    if result.exit_code is None:
        return "could not run: " + (result.output_tail.strip().splitlines() or ["no output"])[-1]
    described = result.describe()
    exit_status = f"exit {result.exit_code}"
    return f"{described} ({exit_status})" if result.exit_code and exit_status not in described else described


def _compare(before: GateResult, now: GateResult, coverage_drop_points: float) -> list[Regression]:
    gate = now.gate
    if now.exit_code is None and before.exit_code is not None:
        return [Regression(gate=gate, message=f"{_status(now)}; the baseline finished ({before.describe()})")]
    found: list[Regression] = []
    new_items = _new_items(before, now)
    if before.failures is not None and now.failures is not None and now.failures > before.failures:
        what = "failed" if gate == "tests" else "errors"
        found.append(
            Regression(
                gate=gate,
                message=f"{now.failures} {what} (baseline {before.failures}){_last_line(now, new_items)}",
                new_items=new_items,
            )
        )
    elif new_items:
        kind = "failing tests" if gate == "tests" else "errors"
        found.append(
            Regression(
                gate=gate,
                message=f"{len(new_items)} new {kind} not in the baseline ({now.failures} in all, "
                f"baseline {before.failures})",
                new_items=new_items,
            )
        )
    elif before.ok and not now.ok:
        found.append(Regression(gate=gate, message=f"broken: {_status(now)}; the baseline passed{_last_line(now, [])}"))
    if (
        before.coverage is not None
        and now.coverage is not None
        and now.coverage < before.coverage - coverage_drop_points
    ):
        found.append(
            Regression(
                gate=gate,
                message=f"coverage {now.coverage:g}% (baseline {before.coverage:g}%, "
                f"allowed drop {coverage_drop_points:g} points)",
            )
        )
    return found


def _new_items(before: GateResult, now: GateResult) -> list[str]:
    """Failures now that the baseline did not have (as a multiset), when both list them all."""
    if not (before.itemised and now.itemised):
        return []
    return list((Counter(now.items) - Counter(before.items)).elements())


def _last_line(result: GateResult, items: list[str]) -> str:
    """A hint from the output when the failures themselves are not listed."""
    if items:
        return ""
    lines = [line.strip() for line in result.output_tail.splitlines() if line.strip()]
    return f": {lines[-1][:300]}" if lines else ""
