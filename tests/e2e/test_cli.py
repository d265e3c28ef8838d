"""The `jetpack` command line, run as real subprocesses against a real project directory."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from conftest import jetpack_command, subprocess_env
from e2e_helpers import db_path, open_db

from jetpack.cli.main import main

pytestmark = pytest.mark.e2e

TIMEOUT = 60


class Cli:
    """`jetpack …` in a subprocess for one project; runs from inside the project directory."""

    def __init__(self, project: Path, cwd: Path | None = None, **env: str) -> None:
        self.project = project
        self.cwd = cwd or project
        self.env = subprocess_env(project, **env)

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            jetpack_command(*args),
            check=False,
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        if ok:
            assert done.returncode == 0, f"jetpack {' '.join(args)} -> {done.returncode}\n{done.stderr}"
            assert "Traceback" not in done.stderr, done.stderr
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def add(self, title: str, *options: str) -> str:
        return str(self.json("task", "add", title, *options)["created"][0]["id"])

    def task(self, task_id: str) -> dict[str, Any]:
        return dict(self.json("task", "show", task_id)["task"])


@pytest.fixture
def cli(project: Path) -> Cli:
    cli = Cli(project)
    cli.run("init")
    return cli


def _db_dump(project: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (and the schema), to prove a failed command changed nothing."""
    with open_db(db_path(project)) as conn:
        dump = {"sqlite_master": conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()}
        tables = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name"
        ).fetchall()  # virtual tables need their module (sqlite-vec); their shadow tables hold the data
        for (table,) in tables:
            dump[table] = sorted(conn.execute(f'SELECT * FROM "{table}"').fetchall(), key=repr)
        return dump


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), done.stderr
    return lines[0]


# --- init ---------------------------------------------------------------------------------------------


def test_init_creates_config_database_and_gitignore_idempotently(project: Path) -> None:
    (project / ".gitignore").write_text("node_modules/\n*.pyc")  # no final newline
    cli = Cli(project)
    first = cli.run("init")
    assert (project / ".jetpack" / "config.toml").is_file()
    assert db_path(project).is_file()
    assert "Jetpack project ready" in first.stdout
    assert str(db_path(project)) in first.stdout
    gitignore = (project / ".gitignore").read_text().splitlines()
    assert gitignore[:2] == ["node_modules/", "*.pyc"]
    files = ("jetpack.db", "jetpack.db-wal", "jetpack.db-shm", "jetpack.db-writer", "jetpack.db-checkpoint")
    for entry in [f".jetpack/{name}" for name in files]:  # the database and the lock files beside it
        assert gitignore.count(entry) == 1, gitignore

    config_before = (project / ".jetpack" / "config.toml").read_text()
    cli.add("Survives a second init")
    cli.run("init")
    cli.run("init")
    assert (project / ".gitignore").read_text().splitlines() == gitignore
    assert (project / ".jetpack" / "config.toml").read_text() == config_before
    assert cli.json("status")["total"] == 1
    with open_db(db_path(project)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_init_with_a_prefix_and_a_directory_argument(tmp_path: Path) -> None:
    target = tmp_path / "api-project"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cli = Cli(target, cwd=elsewhere)
    cli.run("init", str(target), "--prefix", "api")
    assert 'id_prefix = "api"' in (target / ".jetpack" / "config.toml").read_text()
    assert cli.add("Prefixed").startswith("api-")
    assert not (elsewhere / ".jetpack").exists()


def test_init_honours_jetpack_project_dir_like_every_other_command(tmp_path: Path) -> None:
    """JETPACK_PROJECT_DIR names the project for every command; init must not initialise the cwd instead."""
    project = tmp_path / "project"
    project.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cli = Cli(project, cwd=elsewhere)
    cli.run("init")
    status = cli.json("status")
    assert status["database"] == str(db_path(project))
    assert (project / ".jetpack" / "config.toml").is_file(), "init ignored JETPACK_PROJECT_DIR"
    assert not (elsewhere / ".jetpack").exists(), "init initialised the working directory instead"


# --- task commands ------------------------------------------------------------------------------------


def test_task_commands_json_and_human_output(cli: Cli) -> None:
    added = cli.json(
        "task",
        "add",
        "Write the API",
        "-d",
        "REST endpoints",
        "--acceptance",
        "tests pass",
        "--priority",
        "1",
        "--skill",
        "Python",
        "--label",
        "backend",
        "--file",
        "src/api/**",
        "--estimate",
        "30",
        "--as",
        "planner",
    )
    assert added["count"] == 1
    api = added["created"][0]
    assert (api["title"], api["state"]) == ("Write the API", "ready")
    api_id = api["id"]
    low = cli.add("Polish docs", "--priority", "3")
    urgent = cli.add("Fix prod", "--priority", "0")

    human_add = cli.run("task", "add", "Human readable")
    human_id, state, title = human_add.stdout.split(maxsplit=2)
    assert (state, title.strip()) == ("ready", "Human readable")

    shown = cli.json("task", "show", api_id)
    task = shown["task"]
    assert task["id"] == api_id
    assert task["description"] == "REST endpoints"
    assert task["acceptance"] == "tests pass"
    assert task["priority"] == 1
    assert task["skills"] == ["python"]
    assert task["labels"] == ["backend"]
    assert task["files"] == ["src/api/**"]
    assert task["estimate_minutes"] == 30
    assert task["created_by"] == "planner"
    assert task["state"] == "ready"
    assert [e["kind"] for e in shown["recent_events"]] == ["created"]

    human_show = cli.run("task", "show", api_id).stdout
    assert human_show.startswith(f"{api_id}  Write the API\n")
    assert "state: ready" in human_show
    assert "skills: python" in human_show

    # The ready queue is in claim order: priority, then age.
    ready = [t["id"] for t in cli.json("task", "ready")["tasks"]]
    assert ready == [urgent, api_id, human_id, low]
    listed = cli.json("task", "list")
    assert [t["id"] for t in listed["tasks"]] == ready
    human_list = cli.run("task", "list").stdout.splitlines()
    assert human_list[0].split() == ["ID", "P", "STATE", "ASSIGNEE", "TITLE"]
    assert len(human_list) == 5
    assert human_list[1].split()[:3] == [urgent, "0", "ready"]

    # claim: the best ready task the agent has skills for; the python task needs a skilled agent.
    claimed = cli.json("task", "claim", "--as", "alice")
    assert (claimed["id"], claimed["assignee"], claimed["state"]) == (urgent, "alice", "claimed")
    assert claimed["lease_expires_at"]
    unskilled = _one_error_line(cli.run("task", "claim", api_id, "--as", "carol", ok=False))
    assert "python" in unskilled
    skilled = cli.json("task", "claim", "--as", "bob", "--skills", "python")
    assert skilled["id"] == api_id
    human_claim = cli.run("task", "claim", "--as", "carol")
    assert human_claim.stdout.startswith(f"claimed {human_id}  Human readable")

    assert [t["id"] for t in cli.json("task", "list", "--assignee", "alice")["tasks"]] == [urgent]
    assert {t["id"] for t in cli.json("task", "list", "--state", "claimed")["tasks"]} == {urgent, api_id, human_id}

    done = cli.json("task", "done", urgent, "--as", "alice", "-m", "hotfix in prod.py")
    assert (done["id"], done["state"], done["result_summary"]) == (urgent, "done", "hotfix in prod.py")
    assert cli.run("task", "done", api_id, "--as", "bob").stdout.strip() == f"{api_id} done"

    retried = cli.json("task", "fail", human_id, "-r", "flaky test", "--as", "carol")
    assert (retried["state"], retried["attempts"]) == ("open", 1)  # waiting to be retried
    assert retried["retry_at"] and "assignee" not in retried
    waiting = _one_error_line(cli.run("task", "claim", human_id, "--as", "carol", ok=False))
    assert "waits until" in waiting
    # The wait ends (as if 30 s had passed): what the sweep before every claim then makes ready again.
    with open_db(db_path(cli.project)) as conn:
        conn.execute("UPDATE tasks SET retry_at = retry_at - 30000 WHERE id = ?", (human_id,))
        conn.commit()
    again = cli.json("task", "claim", human_id, "--as", "carol")
    assert again["id"] == human_id
    gave_up = cli.json("task", "fail", human_id, "-r", "cannot be done", "--mode", "give_up", "--as", "carol")
    assert (gave_up["state"], gave_up["attempts"]) == ("failed", 2)

    # The default list hides finished tasks; --all shows them.
    assert [t["id"] for t in cli.json("task", "list")["tasks"]] == [low]
    everything = {t["id"]: t["state"] for t in cli.json("task", "list", "--all")["tasks"]}
    assert everything == {urgent: "done", api_id: "done", human_id: "failed", low: "ready"}

    # Nothing ready for this agent: exit 3 with the reason (human), id null (json).
    assert cli.json("task", "claim", "--as", "dave", "--skills", "rust")["id"] == low
    empty = cli.json("task", "claim", "--as", "erin")
    assert empty["id"] is None
    assert empty["reason"]
    nothing = cli.run("task", "claim", "--as", "erin", ok=False)
    assert nothing.returncode == 3
    assert nothing.stdout.strip()


def test_dep_json_and_cycle_refusal(cli: Cli) -> None:
    first, second = cli.add("First"), cli.add("Second")
    linked = cli.json("task", "dep", second, first)
    assert linked == {"task_id": second, "depends_on": first, "kind": "blocks", "result": "added"}
    assert cli.task(second)["state"] == "open"
    detail = cli.json("task", "show", second)
    assert [link["id"] for link in detail["depends_on"]] == [first]
    assert detail["waiting_on"] == [first]
    assert [link["id"] for link in cli.json("task", "show", first)["dependents"]] == [second]
    assert cli.run("task", "dep", second, first).stdout.strip().startswith(f"{second} depends on {first}")

    before = _db_dump(cli.project)
    cycle = _one_error_line(cli.run("task", "dep", first, second, ok=False))
    assert first in cycle
    assert second in cycle
    assert _db_dump(cli.project) == before


def test_dependants_become_ready_exactly_when_the_last_blocker_is_done(cli: Cli) -> None:
    a, b = cli.add("A"), cli.add("B")
    c = cli.add("C", "--depends-on", a, "--depends-on", b)
    assert cli.task(c)["state"] == "open"
    assert c not in [t["id"] for t in cli.json("task", "ready")["tasks"]]

    cli.json("task", "claim", a, "--as", "alice")
    cli.json("task", "done", a, "--as", "alice")
    assert cli.task(c)["state"] == "open"
    assert cli.json("task", "show", c)["waiting_on"] == [b]
    assert c not in [t["id"] for t in cli.json("task", "ready")["tasks"]]
    refused = _one_error_line(cli.run("task", "claim", c, "--as", "alice", ok=False))
    assert c in refused

    cli.json("task", "claim", b, "--as", "bob")
    assert cli.task(c)["state"] == "open"  # a claimed blocker still blocks
    cli.json("task", "done", b, "--as", "bob")
    assert cli.task(c)["state"] == "ready"
    assert [t["id"] for t in cli.json("task", "ready")["tasks"]] == [c]
    assert cli.json("task", "claim", "--as", "carol")["id"] == c

    kinds = [e["kind"] for e in cli.json("task", "show", c)["recent_events"]]
    assert kinds.count("unblocked") == 1


# --- help ---------------------------------------------------------------------------------------------


def _command_paths() -> Iterator[list[str]]:
    def walk(command: click.Command, path: list[str]) -> Iterator[list[str]]:
        yield path
        if isinstance(command, click.Group):
            ctx = click.Context(command)  # lists and loads the lazily imported commands too
            for name in command.list_commands(ctx):
                subcommand = command.get_command(ctx, name)
                assert subcommand is not None, f"{[*path, name]} is listed but does not load"
                yield from walk(subcommand, [*path, name])

    yield from walk(main, [])


COMMANDS = list(_command_paths())


def test_every_command_is_covered_by_the_help_check() -> None:
    # init serve status agents demo, task and its 12 subcommands, and jetpack itself.
    assert len(COMMANDS) >= 19
    assert ["task", "reopen"] in COMMANDS


_NOT_AT_START = (
    *("jetpack.cli.plans", "jetpack.cli.quality", "jetpack.cli.hook", "jetpack.cli.dashboard"),
    *("jetpack.cli.mcp_config", "jetpack.cli.tokens", "jetpack.cli.start", "jetpack.plans", "jetpack.quality"),
    *("jetpack.hooks", "jetpack.dashboard", "jetpack.harness", "jetpack.swarm.graph_structure"),
    *("numpy", "sqlite_vec"),  # memory and the task graph import numpy when they first need it
    "mcp.client",  # the SDK's client side, which its package __init__ would import
)


def test_serve_starts_without_the_other_commands_numpy_or_the_sdk_client(project: Path) -> None:
    """Agents start `jetpack serve` for every session and wait for it: a real start (until stdin ends)
    imports nothing that only other commands, memory's vectors or an MCP client need."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "jetpack", "serve"],
        input="",
        capture_output=True,
        text=True,
        env=subprocess_env(project),
        cwd=project,
        timeout=60,
        check=True,
    )
    imported = [line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "jetpack.server.stdio" in imported and "mcp.server.mcpserver" in imported
    assert [m for m in imported if m.startswith(_NOT_AT_START)] == []


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(["jetpack", *p]))
def test_help_shows_an_example(project: Path, path: list[str]) -> None:
    """Every command's --help, `jetpack --help` itself included, has an Example section with a command line."""
    done = Cli(project).run(*path, "--help")
    assert done.stdout.startswith("Usage: ")
    assert "Example" in done.stdout, done.stdout
    lines = done.stdout.splitlines()
    heading = next(i for i, line in enumerate(lines) if line.strip().startswith("Example"))
    assert any("jetpack " in line for line in lines[heading + 1 : heading + 4]), done.stdout
    assert not db_path(project).exists(), "--help must not create a database"


# --- errors -------------------------------------------------------------------------------------------


UNKNOWN_ID_COMMANDS = [
    ["task", "show", "jp-zz9q"],
    ["task", "claim", "jp-zz9q"],
    ["task", "done", "jp-zz9q"],
    ["task", "fail", "jp-zz9q", "-r", "nope"],
    ["task", "block", "jp-zz9q", "-r", "nope"],
    ["task", "unblock", "jp-zz9q"],
    ["task", "cancel", "jp-zz9q"],
    ["task", "reopen", "jp-zz9q", "--json"],
    ["task", "dep", "jp-zz9q", "EXISTING"],
    ["task", "dep", "EXISTING", "jp-zz9q", "--json"],
    ["task", "add", "Child", "--parent", "jp-zz9q"],
    ["task", "add", "Waiting", "--depends-on", "jp-zz9q", "--json"],
]


def test_unknown_id_is_one_error_line_exit_1_and_changes_nothing(cli: Cli) -> None:
    existing = cli.add("Existing")
    held = cli.add("Held")
    cli.json("task", "claim", held, "--as", "alice")
    bystander = Cli(cli.project, JETPACK_AGENT="bystander")  # holds nothing, so acting renews no lease
    before = _db_dump(cli.project)
    for command in UNKNOWN_ID_COMMANDS:
        args = [existing if a == "EXISTING" else a for a in command]
        line = _one_error_line(bystander.run(*args, ok=False))
        assert "jp-zz9q" in line, (args, line)
    assert _db_dump(cli.project) == before


def test_completing_or_failing_another_agents_claim_is_refused(cli: Cli) -> None:
    task_id = cli.add("Alice's")
    cli.json("task", "claim", task_id, "--as", "alice")
    before = _db_dump(cli.project)
    for args in (
        ["task", "done", task_id, "-m", "stolen"],
        ["task", "done", task_id, "--json"],
        ["task", "fail", task_id, "-r", "mine now"],
        ["task", "block", task_id, "-r", "mine now"],
        ["task", "claim", task_id],
    ):
        line = _one_error_line(cli.run(*args, "--as", "other", ok=False))
        assert "alice" in line, line
        assert task_id in line, line
    assert _db_dump(cli.project) == before
    held = cli.task(task_id)
    assert (held["state"], held["assignee"]) == ("claimed", "alice")

    # An operator may, and it is recorded as theirs.
    forced = cli.json("task", "done", task_id, "--as", "lead", "--force", "-m", "closed by the lead")
    assert forced["state"] == "done"
    events = cli.json("task", "show", task_id)["recent_events"]
    assert events[-1]["kind"] == "completed"
    assert events[-1]["actor"] == "lead"


def test_invalid_input_is_one_error_line(cli: Cli, tmp_path: Path) -> None:
    before = _db_dump(cli.project)
    _one_error_line(cli.run("task", "add", ok=False))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "bad.json" in _one_error_line(cli.run("task", "add", "--from-file", str(bad), ok=False))
    bad.write_text(json.dumps([{"title": "ok"}, {"titel": "typo"}]))
    _one_error_line(cli.run("task", "add", "--from-file", str(bad), ok=False))
    assert _db_dump(cli.project) == before


# --- status -------------------------------------------------------------------------------------------


def test_status_json_counts(cli: Cli, tmp_path: Path) -> None:
    empty = cli.json("status")
    assert empty["total"] == 0
    assert empty["database"] == str(db_path(cli.project))
    assert empty["schema_version"] >= 1
    assert set(empty["tasks"]) == {"open", "ready", "claimed", "in_progress", "done", "failed", "cancelled", "blocked"}
    assert set(empty["tasks"].values()) == {0}
    assert empty["agents"] == {"live": [], "known": 0}

    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            [
                {"title": "Epic", "ref": "epic", "children": [{"title": "Leaf 1"}, {"title": "Leaf 2"}]},
                {"title": "After the epic", "depends_on": ["epic"]},
                {"title": "Solo 1"},
                {"title": "Solo 2"},
                {"title": "Solo 3"},
            ]
        )
    )
    created = cli.json("task", "add", "--from-file", str(plan))
    assert created["count"] == 7
    ids = {c["title"]: c["id"] for c in created["created"]}
    cli.json("task", "claim", ids["Solo 1"], "--as", "alice")
    cli.json("task", "claim", ids["Solo 2"], "--as", "alice")
    cli.json("task", "done", ids["Solo 2"], "--as", "alice")
    cli.json("task", "cancel", ids["Solo 3"])

    status = cli.json("status")
    assert status["total"] == 7
    assert status["tasks"] == {
        "open": 2,  # the epic (a parent) and the task waiting on it
        "ready": 2,  # the two leaves
        "claimed": 1,
        "in_progress": 0,
        "done": 1,
        "failed": 0,
        "cancelled": 1,
        "blocked": 0,
    }
    human = cli.run("status").stdout
    assert "tasks: 7 total" in human
    assert "agents: 0 live" in human
