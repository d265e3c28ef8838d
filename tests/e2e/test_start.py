"""`jetpack start` as a real process: a swarm of script workers (each an MCP agent) in a git repository."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import jetpack_command, subprocess_env
from e2e_helpers import db_path, kill_process, open_db

pytestmark = pytest.mark.e2e

WAIT = 90.0  # bounds that only stop a broken build from hanging the suite
CONFIG = """\
[tasks]
retry_backoff_seconds = 1
[memory]
embedder = "hash"
[server]
sweep_interval_seconds = 0.5
"""
# Planned files overlap on purpose (README.md, docs/**, src/api.py): workers must take turns on them.
PLAN = [
    {"title": "Schema", "ref": "schema", "files": ["db/schema.sql", "README.md"]},
    {
        "title": "API",
        "depends_on": ["schema"],
        "children": [
            {"title": "Users endpoint", "files": ["src/api.py", "docs/api.md"]},
            {"title": "Orders endpoint", "files": ["src/api.py", "docs/api.md"]},
            {"title": "Health endpoint", "files": ["src/health.py"]},
        ],
    },
    {"title": "Quick start", "files": ["README.md"]},
    {"title": "Contributing", "files": ["README.md", "CONTRIBUTING.md"]},
    {"title": "Guides", "files": ["docs/**"]},
    {"title": "Changelog", "files": ["CHANGELOG.md"]},
    {"title": "CI", "files": []},
]


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / ".jetpack").mkdir(parents=True)
    (root / ".jetpack" / "config.toml").write_text(CONFIG)
    (root / ".gitignore").write_text(".jetpack/\n")
    git(root, "init", "--quiet")
    git(root, "add", ".gitignore")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "--quiet", "-m", "start")
    return root


def load_plan(project: Path, plan: list[dict[str, Any]] = PLAN) -> list[dict[str, Any]]:
    path = project.parent / "plan.json"
    path.write_text(json.dumps(plan))
    done = subprocess.run(
        jetpack_command("task", "add", "--from-file", str(path), "--as", "planner", "--json"),
        cwd=project,
        env=subprocess_env(project),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)["created"]  # type: ignore[no-any-return]


def start(project: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """`jetpack start --harness script --json` (4 agents unless ``args`` says otherwise)."""
    agents = [] if "--agents" in args else ["--agents", "4"]
    return subprocess.Popen(
        jetpack_command("start", *agents, "--harness", "script", "--idle-timeout", "60s", "--json", *args),
        cwd=project,
        env=subprocess_env(project, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, dict[str, Any], str]:
    try:
        out, err = proc.communicate(timeout=WAIT)
    finally:
        kill_process(proc)
    return proc.returncode, json.loads(out) if out.strip() else {}, err


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def kill_stalled_agents(project: Path) -> None:
    """After a failed test: the agents a killed `jetpack start` left hanging (each leads its own group)."""
    for marker in (project / ".jetpack" / "logs").glob("*/*.stalled"):
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            os.killpg(int(marker.read_text().strip()), signal.SIGKILL)


def wait_for(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {WAIT}s waiting for {what}")
        time.sleep(0.05)
    return value


def stalled_pid(project: Path, task_id: str) -> int | None:
    for marker in (project / ".jetpack" / "logs").glob(f"*/{task_id}.stalled"):
        text = marker.read_text().strip()
        if text:
            return int(text)
    return None


def query(project: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with open_db(db_path(project)) as conn:
        return [tuple(row) for row in conn.execute(sql, params).fetchall()]


def unsuccessful_runs(project: Path) -> str:
    """The logs of the agent runs that did not end in a completion (for assertion messages)."""
    logs = sorted((project / ".jetpack" / "logs").glob("*/*.log"))
    return "\n".join(log.read_text() for log in logs if "=== completed" not in log.read_text())


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {state: n for state, n in counts.items() if n}


def leaves(created: list[dict[str, Any]]) -> set[str]:
    ids = {c["id"] for c in created}
    return {i for i in ids if not any(other.startswith(i + ".") for other in ids)}


def test_four_script_workers_complete_every_task_with_one_commit_each_never_sharing_a_file(project: Path) -> None:
    created = load_plan(project)
    code, summary, err = finish(start(project))

    assert code == 0, err
    work = leaves(created)
    assert summary["reason"] == "drained" and summary["completed"] == len(work) == 9
    assert nonzero(summary["tasks"]) == {"done": len(created)}
    assert summary["failed_attempts"] == 0 and summary["respawns"] == 0, unsuccessful_runs(project)
    # One commit per task, by the worker that did it, touching exactly that task's files.
    log = git(project, "log", "--format=%x00%an%x01%s", "--name-only").split("\0")[1:-1]  # the first is "start"
    commits = {}
    for entry in log:
        header, _, names = entry.partition("\n")
        author, subject = header.split("\x01")
        task_id = subject.split(":")[0]
        commits[task_id] = (author, sorted(n for n in names.splitlines() if n))
    assert set(commits) == work and len(log) == len(work)
    touched = dict(query(project, "SELECT id, files_touched FROM tasks"))
    for task_id, (author, files) in commits.items():
        assert author.startswith("script-") and files == sorted(json.loads(touched[task_id]))
    # Every line a worker appended is there: no edit was lost to another worker's.
    readme = (project / "README.md").read_text().splitlines()
    assert len(readme) == 3 and len({line.split()[1] for line in readme}) == 3
    # No two workers ever held overlapping files at once: each worker reserved its planned files
    # exclusively before editing and kept them until its task was complete.
    reservations = query(
        project, "SELECT agent, pattern, task_id, created_at, released_at FROM reservations WHERE task_id IS NOT NULL"
    )
    assert {r[2] for r in reservations} == work and all(r[4] is not None for r in reservations)
    by_file: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for _agent, pattern, task_id, created_at, released_at in reservations:
        key = "docs/" if pattern.startswith("docs/") else pattern
        by_file[key].append((created_at, released_at, task_id))
    for key, spans in by_file.items():
        spans.sort()
        for (_, end, first), (begin, _, second) in itertools.pairwise(spans):
            assert end <= begin, f"{first} and {second} held {key} at the same time"
    assert len(by_file["README.md"]) == 3 and len(by_file["src/api.py"]) == 2
    assert git(project, "status", "--porcelain") == ""


SMALL_PLAN = [{"title": title, "files": [f"{title}.md"]} for title in ("changelog", "guide", "faq")]


def test_a_worker_killed_mid_task_is_respawned_and_its_task_recovered_and_finished(project: Path) -> None:
    created = load_plan(project, SMALL_PLAN)
    victim = next(c["id"] for c in created if c["title"] == "changelog")
    proc = start(project, "--agents", "2", JETPACK_SCRIPT_STALL=victim)
    try:
        pid = wait_for("the worker to stall on its task", lambda: stalled_pid(project, victim))
        os.kill(pid, signal.SIGKILL)
        code, summary, err = finish(proc)
    finally:
        kill_process(proc)
        kill_stalled_agents(project)

    assert code == 0, err
    assert summary["reason"] == "drained" and nonzero(summary["tasks"]) == {"done": len(created)}
    assert summary["respawns"] == 1 and summary["failed_attempts"] == 1
    assert summary["completed"] == len(leaves(created))
    events = query(  # the task's state changes (its reservations and mail are events too)
        project, "SELECT kind, actor FROM events WHERE task_id = ? AND after_state IS NOT NULL ORDER BY id", victim
    )
    kinds = [kind for kind, _ in events]
    assert kinds[:2] == ["created", "claimed"] and "attempt_failed" in kinds and kinds[-1] == "completed"
    (attempts,) = query(project, "SELECT attempts FROM tasks WHERE id = ?", victim)
    assert attempts == (1,)
    assert [s for s in git(project, "log", "--format=%s").splitlines() if s.startswith(victim + ":")] != []
    assert not alive(pid)


def test_sigint_releases_every_lease_and_reservation_before_exiting(project: Path) -> None:
    created = load_plan(project)
    ids = [c["id"] for c in created]
    proc = start(project, JETPACK_SCRIPT_STALL=",".join(ids))  # every worker hangs in its first task
    try:
        wait_for("four workers to be busy", lambda: len(query(project, HELD)) == 4)
        wait_for("a worker to stall", lambda: any(stalled_pid(project, t) for t in ids))
        pids = [pid for pid in (stalled_pid(project, t) for t in ids) if pid is not None]
        proc.send_signal(signal.SIGINT)
        code, summary, err = finish(proc)
        left_running = [pid for pid in pids if alive(pid)]
    finally:
        kill_process(proc)
        kill_stalled_agents(project)

    assert code == 130, err
    assert summary["reason"] == "interrupted" and summary["completed"] == 0
    assert query(project, HELD) == []
    assert query(project, "SELECT count(*) FROM reservations WHERE released_at IS NULL") == [(0,)]
    assert query(project, "SELECT max(attempts) FROM tasks") == [(0,)]  # handed back untouched
    assert pids and left_running == []  # the agents' process groups were killed


HELD = "SELECT id FROM tasks WHERE state IN ('claimed', 'in_progress')"


def run_plan(project: Path, plan: list[dict[str, Any]], *args: str) -> tuple[int, dict[str, Any], str]:
    load_plan(project, plan)
    return finish(start(project, *args))


def test_worktrees_give_each_worker_a_branch_and_leave_the_main_tree_alone(project: Path) -> None:
    code, summary, err = run_plan(project, SMALL_PLAN, "--agents", "2", "--worktrees")

    assert code == 0, err
    assert summary["reason"] == "drained" and summary["completed"] == 3
    assert {w["branch"] for w in summary["workers"]} == {"jetpack/script-1", "jetpack/script-2"}
    assert git(project, "log", "--format=%s").splitlines() == ["start"]  # the main branch is untouched
    subjects = git(project, "log", "--format=%s", "jetpack/script-1", "jetpack/script-2", "^HEAD").splitlines()
    assert sorted(s.split(": ")[1] for s in subjects) == ["changelog", "faq", "guide"]
    for worker in summary["workers"]:
        tree = project / ".jetpack" / "worktrees" / worker["name"]
        assert git(tree, "rev-parse", "--abbrev-ref", "HEAD").strip() == worker["branch"]


def test_with_quality_gates_the_harness_completes_a_task_only_when_its_gate_passes(project: Path) -> None:
    config = project / ".jetpack" / "config.toml"
    config.write_text(config.read_text() + '[quality]\nbuild = "test ! -e broken.flag"\n')
    plan = [
        {"title": "Good", "ref": "good", "files": ["good.txt"]},
        {"title": "Break the build", "depends_on": ["good"], "files": ["broken.flag"], "max_attempts": 1},
    ]
    code, summary, err = run_plan(project, plan, "--agents", "1")

    assert code == 1, err  # a task ended failed
    assert summary["reason"] == "drained" and nonzero(summary["tasks"]) == {"done": 1, "failed": 1}
    rows = dict(query(project, "SELECT title, state || ' | ' || coalesce(result_summary, '') FROM tasks"))
    assert rows["Good"].startswith("done | Appended a line for")  # the worker's note became the summary
    assert rows["Break the build"].startswith("failed")
    (reason,) = query(project, "SELECT note FROM events WHERE kind = 'failed' OR kind = 'attempt_failed'")
    assert "build" in reason[0]
    snapshots = query(project, "SELECT kind, passed FROM quality_snapshots ORDER BY id")
    assert snapshots == [("baseline", None), ("check", 1), ("check", 0)]
