"""Quality gates with real commands: tiny python scripts play the project's test runner, linter,
build and coverage tools in a temporary git repository, and the gate compares what they print
with the recorded baseline."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from jetpack.actor import Actor
from jetpack.cli.main import main
from jetpack.config import QualitySettings
from jetpack.errors import Conflict
from jetpack.quality import (
    QualityContext,
    check_against_baseline,
    ensure_baseline,
    gate_task,
    get_snapshot,
    latest_baseline,
    record_baseline,
    run_check,
    run_gate,
)
from jetpack.quality.parsing import read_output
from jetpack.store import DataLayer
from jetpack.tasks import NewTask, QueueContext, TaskState, claim_task, create_tasks, get_task

PY = sys.executable

RUN_TESTS = '''\
"""A tiny test runner that prints like pytest: FAILED lines, then the summary."""
import importlib, sys, traceback
sys.path.insert(0, ".")
module = importlib.import_module("test_calc")
passed, failed = 0, []
for name in sorted(n for n in dir(module) if n.startswith("test_")):
    try:
        getattr(module, name)()
        passed += 1
    except Exception as error:
        failed.append(f"test_calc.py::{name} - {type(error).__name__}")
for line in failed:
    print("FAILED", line)
counts = ([f"{len(failed)} failed"] if failed else []) + [f"{passed} passed"]
print(", ".join(counts) + " in 0.01s")
sys.exit(1 if failed else 0)
'''

LINT = '''\
"""A tiny linter: every print( in calc.py is an error, reported like ruff's concise format."""
import sys
errors = [
    f"calc.py:{number}:5: T201 `print` found: {line.strip()}"
    for number, line in enumerate(open("calc.py"), start=1)
    if "print(" in line
]
print("\\n".join(errors + [f"Found {len(errors)} errors." if errors else "All checks passed!"]))
sys.exit(1 if errors else 0)
'''

CALC = """\
def add(a, b):
    return a + b


def mul(a, b):
    return a * b
"""

TESTS = """\
from calc import add, mul


def test_add():
    assert add(2, 3) == 5


def test_mul():
    assert mul(2, 3) == 6
"""


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    for name, text in {
        "run_tests.py": RUN_TESTS,
        "lint.py": LINT,
        "calc.py": CALC,
        "test_calc.py": TESTS,
        "coverage.txt": "87.5",
        ".gitignore": "__pycache__/\n",
    }.items():
        (root / name).write_text(text)
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "start")
    return root


def _settings(**changes: object) -> QualitySettings:
    values: dict[str, object] = {
        "build": f"{PY} -m py_compile calc.py",
        "lint": f"{PY} lint.py",
        "tests": f"{PY} run_tests.py",
        "coverage": f"{PY} -c \"print('TOTAL  40  5  ' + open('coverage.txt').read().strip() + '%')\"",
        "timeout_seconds": 60.0,
        "coverage_drop_points": 1.0,
    }
    values.update(changes)
    return QualitySettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def quality(store: DataLayer, repo: Path) -> QualityContext:
    return QualityContext(store=store, project_dir=repo, settings=_settings())


def _edit(repo: Path, name: str, old: str, new: str) -> None:
    path = repo / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_the_baseline_records_each_gate_with_its_counts_and_the_commit(quality: QualityContext, repo: Path) -> None:
    baseline = record_baseline(quality, "alice")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
    assert baseline.commit == head.stdout.strip() and not baseline.dirty
    summary = {r.gate: (r.exit_code, r.passed, r.failures, r.coverage) for r in baseline.results}
    assert summary == {
        "build": (0, None, None, None),
        "lint": (0, None, 0, None),
        "tests": (0, 2, 0, None),
        "coverage": (0, None, None, 87.5),
    }
    assert latest_baseline(quality) == baseline == get_snapshot(quality, baseline.id)


def test_a_new_failing_test_is_a_regression_that_names_the_test(quality: QualityContext, repo: Path) -> None:
    record_baseline(quality, "alice")
    _edit(repo, "calc.py", "return a * b", "return a + b")
    check = run_check(quality, "alice", task_id="jp-a3f8.1")
    assert not check.verdict.passed
    [regression] = check.verdict.regressions
    assert regression.gate == "tests"
    assert regression.message == "1 failed (baseline 0)"
    assert regression.new_items == ["test_calc.py::test_mul"]
    stored = get_snapshot(quality, check.snapshot.id)
    assert stored.passed is False and stored.task_id == "jp-a3f8.1" and stored.dirty
    assert stored.baseline_id == check.baseline.id and stored.regressions == check.verdict.regressions


def test_failures_already_in_the_baseline_do_not_block(quality: QualityContext, repo: Path) -> None:
    _edit(repo, "calc.py", "return a * b", "print('mul')\n    return a + b")
    record_baseline(quality, "alice")  # a legacy failing test and a legacy lint error
    _edit(repo, "calc.py", "return a + b\n\n\ndef mul", "return b + a\n\n\ndef mul")  # unrelated edit
    check = run_check(quality, "alice")
    assert check.verdict.passed, check.verdict.regressions
    assert check.verdict.notes == [
        "lint: 1 error, as in the baseline (1 error): not blocking",
        "tests: 1 failed, 1 passed, as in the baseline (1 failed, 1 passed): not blocking",
    ]


def test_a_new_lint_error_blocks_even_when_a_legacy_one_was_fixed(quality: QualityContext, repo: Path) -> None:
    _edit(repo, "calc.py", "    return a + b", "    print('add')\n    return a + b")
    record_baseline(quality, "alice")
    _edit(repo, "calc.py", "    print('add')\n", "")
    _edit(repo, "calc.py", "    return a * b", "    print('mul')\n    return a * b")
    check = run_check(quality, "alice")
    [regression] = check.verdict.regressions
    assert regression.gate == "lint"
    assert regression.message == "1 new errors not in the baseline (1 in all, baseline 1)"
    assert regression.new_items == ["calc.py: T201 `print` found: print('mul')"]


def test_a_lint_error_moved_by_an_edit_above_it_is_not_new(quality: QualityContext, repo: Path) -> None:
    _edit(repo, "calc.py", "    return a * b", "    print('mul')\n    return a * b")
    record_baseline(quality, "alice")
    (repo / "calc.py").write_text('"""Calculator."""\n\n' + (repo / "calc.py").read_text())
    assert run_check(quality, "alice").verdict.passed


def test_a_broken_build_is_a_regression(quality: QualityContext, repo: Path) -> None:
    record_baseline(quality, "alice")
    (repo / "calc.py").write_text("def add(a, b)\n    return a + b\n")
    regressions = {r.gate: r.message for r in run_check(quality, "alice").verdict.regressions}
    assert regressions["build"].startswith("broken: exit 1; the baseline passed: ")
    assert "SyntaxError" in regressions["build"]
    assert regressions["tests"].startswith("broken: exit 1; the baseline passed")


def test_coverage_may_drop_only_by_the_configured_points(quality: QualityContext, repo: Path) -> None:
    record_baseline(quality, "alice")
    (repo / "coverage.txt").write_text("86.5")
    assert run_check(quality, "alice").verdict.passed
    (repo / "coverage.txt").write_text("86.4")
    [regression] = run_check(quality, "alice").verdict.regressions
    assert (regression.gate, regression.message) == (
        "coverage",
        "coverage 86.4% (baseline 87.5%, allowed drop 1 points)",
    )


def test_a_command_past_its_timeout_is_killed_with_everything_it_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time; "
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        f"open({str(pid_file)!r}, 'w').write(str(child.pid)); print('started', flush=True); time.sleep(600)"
    )
    result = run_gate("tests", f'{PY} -c "{script}"', tmp_path, timeout_seconds=2)
    assert result.timed_out and result.exit_code is None and "started" in result.output_tail
    assert _gone_or_zombie(int(pid_file.read_text()))


def _gone_or_zombie(pid: int) -> bool:
    import time

    for _ in range(200):  # the orphaned child is reaped by init shortly after the kill
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_a_gate_that_times_out_where_the_baseline_finished_is_a_regression(quality: QualityContext, repo: Path) -> None:
    record_baseline(quality, "alice")
    hanging = _settings(timeout_seconds=1.0, tests=f'{PY} -c "import time; time.sleep(600)"')
    slow = QualityContext(store=quality.store, project_dir=repo, settings=hanging)
    regressions = {r.gate: r.message for r in run_check(slow, "alice").verdict.regressions}
    assert regressions["tests"].startswith("timed out after ")
    assert regressions["tests"].endswith("; the baseline finished (2 passed)")


def test_gate_task_fails_the_workers_attempt_with_the_details(
    quality: QualityContext, queue: QueueContext, alice: Actor, repo: Path
) -> None:
    [task] = create_tasks(queue, alice, [NewTask(title="Speed up mul", files=["calc.py"])])
    assert claim_task(queue, alice).task is not None
    assert ensure_baseline(quality, "swarm") is not None
    _edit(repo, "calc.py", "return a * b", "return a + b")
    outcome = gate_task(quality, queue, alice, task.id)
    assert not outcome.passed and outcome.task is not None
    assert outcome.task.attempts == 1 and outcome.task.assignee is None  # requeued (after a backoff)
    assert outcome.task.state in (TaskState.READY, TaskState.OPEN)
    assert outcome.reason is not None
    assert outcome.reason.startswith("quality gate: regression against baseline #1, commit ")
    assert "- tests: 1 failed (baseline 0)\n    test_calc.py::test_mul" in outcome.reason
    events = get_task(queue, task.id).recent_events
    assert any(e.kind == "attempt_failed" and e.note == outcome.reason for e in events)


def test_gate_task_that_passes_leaves_the_claim_alone(
    quality: QualityContext, queue: QueueContext, alice: Actor
) -> None:
    [task] = create_tasks(queue, alice, [NewTask(title="Docs")])
    claim_task(queue, alice)
    ensure_baseline(quality, "swarm")
    outcome = gate_task(quality, queue, alice, task.id)
    assert outcome.passed and outcome.task is None
    assert outcome.check is not None and outcome.check.snapshot.task_id == task.id
    assert get_task(queue, task.id).task.state == TaskState.CLAIMED


def test_gate_task_leaves_a_task_that_is_no_longer_held(
    quality: QualityContext, queue: QueueContext, alice: Actor, repo: Path
) -> None:
    [task] = create_tasks(queue, alice, [NewTask(title="Docs")])
    ensure_baseline(quality, "swarm")
    _edit(repo, "calc.py", "return a * b", "return a + b")
    outcome = gate_task(quality, queue, alice, task.id)
    assert not outcome.passed and outcome.task is None
    assert outcome.note == f"{task.id} is ready; not failed"


def test_checking_needs_a_baseline_and_ensure_baseline_records_only_once(quality: QualityContext) -> None:
    with pytest.raises(Conflict, match="no quality baseline yet"):
        run_check(quality, "alice")
    first = ensure_baseline(quality, "swarm")
    assert first is not None and ensure_baseline(quality, "swarm") == first


def test_without_commands_the_gate_passes_and_baseline_explains(store: DataLayer, repo: Path, alice: Actor) -> None:
    empty = QualityContext(store=store, project_dir=repo)
    assert ensure_baseline(empty, "swarm") is None
    queue = QueueContext(store=store)
    assert gate_task(empty, queue, alice, "jp-a3f8").passed
    with pytest.raises(Conflict, match=r"add them to \[quality\] in .jetpack/config.toml"):
        record_baseline(empty, "alice")


def test_gate_commands_do_not_see_the_swarms_jetpack_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JETPACK_PROJECT_DIR", "/the/swarm")
    monkeypatch.setenv("KEEP_ME", "yes")
    command = f"{PY} -c \"import os; print(os.environ.get('JETPACK_PROJECT_DIR'), os.environ.get('KEEP_ME'))\""
    assert run_gate("build", command, tmp_path, 60).output_tail.strip() == "None yes"


@pytest.mark.both_adapters
def test_snapshots_are_stored_the_same_on_every_datalayer(store: DataLayer, repo: Path) -> None:
    quality = QualityContext(store=store, project_dir=repo, settings=_settings(build="", lint="", coverage=""))
    baseline = record_baseline(quality, "alice")
    _edit(repo, "calc.py", "return a * b", "return a + b")
    check = run_check(quality, "bob", task_id="jp-a3f8")
    assert latest_baseline(quality) == baseline
    assert get_snapshot(quality, check.snapshot.id) == check.snapshot
    assert check.snapshot.passed is False and check.snapshot.results[0].items == ["test_calc.py::test_mul"]


def test_real_pytest_output_is_counted_and_itemised(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text(
        textwrap.dedent(
            """
            import pytest

            def test_ok():
                pass

            def test_bad():
                assert 1 == 2

            @pytest.mark.skip
            def test_skipped():
                pass
            """
        )
    )
    command = f"{PY} -m pytest -q -p no:cacheprovider -o addopts= test_sample.py"
    result = run_gate("tests", command, tmp_path, 120)
    assert (result.exit_code, result.passed, result.failures) == (1, 1, 1)
    assert result.items == ["test_sample.py::test_bad"] and result.itemised


@pytest.mark.parametrize(
    ("gate", "output", "exit_code", "expected"),
    [
        ("tests", "==== 2 failed, 40 passed, 1 error, 3 skipped in 2.51s ====", 1, (40, 3, None)),
        ("tests", "no tests ran in 0.01s", 5, (0, 0, None)),
        ("tests", "..\n----\nRan 5 tests in 0.002s\n\nFAILED (failures=1, errors=1, skipped=1)", 1, (2, 2, None)),
        ("tests", "Ran 3 tests in 0.001s\n\nOK", 0, (3, 0, None)),
        ("tests", "TOTAL    120     18    85%\n12 passed in 1.0s", 0, (12, 0, 85.0)),
        ("lint", "a.py:1:8: F401 [*] `os` imported but unused\nFound 1 error.\n", 1, (None, 1, None)),
        ("lint", "All checks passed!", 0, (None, 0, None)),
        ("types", "a.py:3: error: Bad  [misc]\na.py:3: note: See\nFound 1 error in 1 file", 1, (None, 1, None)),
        ("types", "Success: no issues found in 12 source files", 0, (None, 0, None)),
        ("types", "0 errors, 2 warnings, 0 informations", 0, (None, 0, None)),
        ("build", "whatever happened", 2, (None, None, None)),
        ("coverage", "Total coverage: 91.25%", 0, (None, None, 91.25)),
    ],
)
def test_tool_outputs_are_read_into_counts(
    gate: str, output: str, exit_code: int, expected: tuple[int | None, int | None, float | None]
) -> None:
    reading = read_output(gate, output, exit_code)
    assert (reading.passed, reading.failures, reading.coverage) == expected


def test_diagnostics_are_kept_without_line_numbers() -> None:
    reading = read_output("types", "src/a.py:10: error: Incompatible return  [return-value]\nFound 1 error", 1)
    assert reading.items == ["src/a.py: error: Incompatible return [return-value]"]


def test_a_gate_missing_from_the_baseline_is_judged_on_its_own(quality: QualityContext, repo: Path) -> None:
    baseline = record_baseline(QualityContext(quality.store, repo, _settings(lint="")), "alice")
    results = [run_gate("lint", f"{PY} lint.py", repo, 60)]
    assert check_against_baseline(baseline, results).notes == ["lint: no baseline for this gate; it passes"]
    _edit(repo, "calc.py", "return a * b", "print(1)\n    return a * b")
    verdict = check_against_baseline(baseline, [run_gate("lint", f"{PY} lint.py", repo, 60)])
    assert [r.message for r in verdict.regressions] == ["1 error (exit 1) (no baseline to compare)"]


def _cli(project: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--project", str(project), *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_baseline_check_and_show(repo: Path) -> None:
    (repo / ".jetpack").mkdir()
    (repo / ".jetpack" / "config.toml").write_text(
        f'[quality]\ntests = "{PY} run_tests.py"\nlint = "{PY} lint.py"\ntimeout_seconds = 60\n'
    )
    code, out, _ = _cli(repo, "quality", "baseline")
    assert code == 0 and out.startswith("baseline #1 recorded at ")
    assert "tests  2 passed" in out
    code, out, _ = _cli(repo, "quality", "check")
    assert code == 0 and "passed: nothing got worse than the baseline" in out
    _edit(repo, "calc.py", "return a * b", "return a + b")
    code, out, _ = _cli(repo, "quality", "check", "--json")
    assert code == 1
    check = json.loads(out)
    assert check["verdict"]["regressions"][0]["new_items"] == ["test_calc.py::test_mul"]
    code, out, _ = _cli(repo, "quality", "show", str(check["snapshot"]["id"]))
    assert code == 0 and "REGRESSION:\n  tests: 1 failed (baseline 0)" in out
    code, out, _ = _cli(repo, "quality", "show")
    assert code == 0 and "1 regression(s)" in out


def test_cli_explains_when_nothing_is_configured(project: Path) -> None:
    (project / ".jetpack").mkdir()
    code, _, err = _cli(project, "quality", "check")
    assert code == 1 and "no quality commands are configured" in err


def test_config_rejects_a_bad_timeout(project: Path) -> None:
    (project / ".jetpack").mkdir()
    (project / ".jetpack" / "config.toml").write_text("[quality]\ntimeout_seconds = 0\n")
    code, _, err = _cli(project, "quality", "show")
    assert code != 0 and "quality.timeout_seconds must be between 1 and 86400" in (err or "")
