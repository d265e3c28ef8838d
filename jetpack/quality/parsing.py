"""Counts from the output of the usual tools; anything unrecognised falls back to the exit status.

* tests: pytest's summary line (``3 failed, 40 passed, 1 error in 2.1s``) and its ``FAILED``/``ERROR``
  lines (test ids); unittest's ``Ran N tests`` / ``FAILED (failures=…, errors=…)``.
* lint and types: ``Found N errors`` (ruff, mypy, tsc), ``All checks passed!`` (ruff), ``Success: no
  issues found`` (mypy), ``N errors, M warnings`` (pyright); the diagnostics themselves from lines
  shaped ``path:line[:col]: message`` (ruff ``--output-format concise``, mypy, flake8, eslint unix…),
  kept without their line numbers so that an edit above a legacy error does not make it "new".
* coverage, in any gate's output: coverage.py's ``TOTAL … 87%`` row, or ``coverage: 87.5%``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_PYTEST_COUNT = re.compile(r"\b(\d+) (passed|failed|errors?)\b")
_PYTEST_SUMMARY = re.compile(r"\b(?:\d+ (?:passed|failed|errors?|skipped|deselected)|no tests ran)\b.* in [\d.]+s\b")
_PYTEST_ITEM = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)
_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in", re.MULTILINE)
_UNITTEST_FAILED = re.compile(r"^FAILED \(([^)]*)\)\s*$", re.MULTILINE)
_FOUND = re.compile(r"\bFound (\d+) errors?\b")
_PYRIGHT = re.compile(r"^\s*(\d+) errors?, \d+ warnings?", re.MULTILINE)
_CLEAN = re.compile(r"^(?:All checks passed!|Success: no issues found)", re.MULTILINE)
_DIAGNOSTIC = re.compile(r"^(?P<path>[^\s:][^:\n]*?):(?P<line>\d+)(?::\d+)?:\s*(?P<message>\S.*)$", re.MULTILINE)
_COVERAGE_TOTAL = re.compile(r"^TOTAL\s.*?(\d+(?:\.\d+)?)%\s*$", re.MULTILINE)
_COVERAGE_LINE = re.compile(r"(?i)\bcoverage\b[^\n\d%]{0,40}?(\d+(?:\.\d+)?)\s*%")
ITEMS_MAX = 2000  # diagnostics kept per gate; a legacy codebase may have thousands


@dataclass
class Reading:
    passed: int | None = None
    failures: int | None = None
    coverage: float | None = None
    items: list[str] = field(default_factory=list)


def read_output(gate: str, output: str, exit_code: int | None) -> Reading:
    if gate == "tests":
        reading = _tests(output)
    elif gate in ("lint", "types"):
        reading = _diagnostics(output)
    else:
        reading = Reading()
    if reading.failures is None and gate in ("tests", "lint", "types") and exit_code == 0:
        reading.failures = 0  # it passed and said nothing countable: nothing failed
    reading.coverage = read_coverage(output)
    reading.items = reading.items[:ITEMS_MAX]
    return reading


def _tests(output: str) -> Reading:
    summaries = [line for line in output.splitlines() if _PYTEST_SUMMARY.search(line)]
    if summaries:
        counts = {"passed": 0, "failed": 0, "error": 0}
        for number, word in _PYTEST_COUNT.findall(summaries[-1]):
            counts[word.rstrip("s") if word.startswith("error") else word] += int(number)
        items = list(dict.fromkeys(_PYTEST_ITEM.findall(output)))
        return Reading(passed=counts["passed"], failures=counts["failed"] + counts["error"], items=items)
    ran = _UNITTEST_RAN.findall(output)
    if ran:
        total = int(ran[-1])
        failed = _UNITTEST_FAILED.findall(output)
        failures = 0
        if failed:
            counts = dict(part.strip().split("=", 1) for part in failed[-1].split(",") if "=" in part)
            failures = sum(int(counts.get(key, 0)) for key in ("failures", "errors"))
            total -= int(counts.get("skipped", 0))
        return Reading(passed=max(total - failures, 0), failures=failures)
    return Reading()


def _diagnostics(output: str) -> Reading:
    items = [
        " ".join(f"{m['path']}: {m['message']}".split())
        for m in _DIAGNOSTIC.finditer(output)
        if not m["message"].startswith(("note:", "warning:"))
    ]
    found = _FOUND.findall(output) or _PYRIGHT.findall(output)
    if found:
        failures: int | None = int(found[-1])
    elif _CLEAN.search(output):
        failures = 0
    else:
        failures = len(items) if items else None
    return Reading(failures=failures, items=items)


def read_coverage(output: str) -> float | None:
    found = _COVERAGE_TOTAL.findall(output) or _COVERAGE_LINE.findall(output)
    return float(found[-1]) if found else None
