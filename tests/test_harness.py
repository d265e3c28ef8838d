"""The AgentHarness: adapters as configuration, the brief an agent gets, and how a run is settled —
exit codes, git changes, timeouts that kill the whole process group — plus fake `claude`, `codex`
and `gemini` executables that check each adapter's documented invocation end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import jetpack_command, subprocess_env

from jetpack import tasks as task_queue
from jetpack.actor import Actor
from jetpack.config import Settings, load_settings
from jetpack.errors import InvalidInput
from jetpack.harness.adapters import (
    BUILTIN_ADAPTERS,
    CLAUDE_ALLOWED_TOOLS,
    ServerEntry,
    codex_overrides,
    command_line,
    custom_adapter,
    load_adapter,
)
from jetpack.harness.outcome import Outcome, RunReport, Services, Worker
from jetpack.harness.prompt import brief_for, render_prompt
from jetpack.harness.runner import prepare, run_task
from jetpack.harness.script_agent import concrete_files
from jetpack.mail.model import MailContext
from jetpack.memory.context import MemoryContext
from jetpack.reservations.service import ReservationContext, reserve_files
from jetpack.store import DataLayer, open_store
from jetpack.swarm.progress import parse_duration
from jetpack.tasks import QueueContext, Task
from jetpack.tasks.model import NewTask
from jetpack.workloop import ClaimContext, claim_for_agent

FAKE_AGENTS = Path(__file__).resolve().parent / "fixtures" / "fake_agents"
CONFIG = """\
[tasks]
retry_backoff_seconds = 0
[memory]
embedder = "hash"
"""


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


def make_repository(root: Path, config: str = CONFIG) -> Path:
    """A git repository with one commit and a Jetpack project whose .jetpack/ git ignores."""
    (root / ".jetpack").mkdir(parents=True)
    (root / ".jetpack" / "config.toml").write_text(config)
    (root / ".gitignore").write_text(".jetpack/\n")
    git(root, "init", "--quiet")
    git(root, "add", ".gitignore")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "--quiet", "-m", "start")
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repository(tmp_path / "repo")


@pytest.fixture
def repo_settings(repo: Path) -> Settings:
    return load_settings({"JETPACK_PROJECT_DIR": str(repo)})


@pytest.fixture
def repo_store(repo_settings: Settings) -> Iterator[DataLayer]:
    opened = open_store(repo_settings.db_path)
    yield opened
    opened.close()


@pytest.fixture
def services(repo_settings: Settings, repo_store: DataLayer) -> Services:
    return Services(
        queue=QueueContext(store=repo_store, settings=repo_settings.tasks),
        reservations=ReservationContext.for_settings(repo_settings, repo_store),
        memory=MemoryContext.for_settings(repo_settings, repo_store),
        project=repo_settings.project_dir,
    )


def claim(services: Services, worker: Worker) -> tuple[Task | None, str | None, ClaimContext]:
    mail = MailContext(store=services.queue.store)
    return claim_for_agent(services.queue, services.reservations, mail, services.memory, worker.actor())


def claimed_task(services: Services, worker: Worker, **fields: Any) -> tuple[Task, ClaimContext]:
    """A new task, claimed by the worker as the swarm would."""
    task_queue.create_tasks(services.queue, Actor("planner"), [NewTask(title="Write the parser", **fields)])
    task, _, context = claim(services, worker)
    assert task is not None
    return task, context


# --- adapters are configuration ------------------------------------------------------------------------


def test_builtin_adapters_are_the_documented_commands() -> None:
    assert BUILTIN_ADAPTERS["claude"].command[:3] == ("claude", "-p", "{prompt}")
    assert "--strict-mcp-config" in BUILTIN_ADAPTERS["claude"].command
    assert BUILTIN_ADAPTERS["codex"].command[:2] == ("codex", "exec")
    assert BUILTIN_ADAPTERS["gemini"].command[0] == "gemini"
    assert BUILTIN_ADAPTERS["gemini"].env == {"GEMINI_CLI_SYSTEM_SETTINGS_PATH": "{mcp_config}"}
    assert "mcp__jetpack" in CLAUDE_ALLOWED_TOOLS and "Bash(git commit:*)" in CLAUDE_ALLOWED_TOOLS


def test_codex_overrides_are_toml_values_naming_the_server_and_its_identity() -> None:
    entry = ServerEntry("/venv/bin/python", ("-m", "jetpack", "serve"), {"JETPACK_AGENT": 'co"dex-1'})
    overrides = codex_overrides(entry)
    assert overrides[::2] == ["-c"] * 4
    parsed = {}
    for item in overrides[1::2]:
        key, _, value = item.partition("=")
        parsed[key] = tomllib.loads(f"v = {value}")["v"]
    assert parsed == {
        "mcp_servers.jetpack.command": "/venv/bin/python",
        "mcp_servers.jetpack.args": ["-m", "jetpack", "serve"],
        "mcp_servers.jetpack.env": {"JETPACK_AGENT": 'co"dex-1'},
        "mcp_servers.jetpack.startup_timeout_sec": 30,
    }


def test_a_custom_command_fills_known_placeholders_and_leaves_other_braces() -> None:
    adapter = custom_adapter("mybot --task {task_id} --json '{\"a\": 1}' --prompt-file {prompt_file}")
    argv = command_line(adapter, {"task_id": "jp-1", "prompt_file": "/p.md"}, [])
    assert argv == ["mybot", "--task", "jp-1", "--json", '{"a": 1}', "--prompt-file", "/p.md"]


def test_the_harness_file_overrides_a_builtin_adapter_and_adds_new_ones(tmp_path: Path) -> None:
    (tmp_path / ".jetpack").mkdir()
    (tmp_path / ".jetpack" / "harness.toml").write_text(
        '[adapters.claude]\nenv = { ANTHROPIC_MODEL = "claude-sonnet" }\n'
        '[adapters.aider]\ncommand = "aider --message-file {prompt_file} --yes"\nmcp_config = "none"\n'
    )
    claude = load_adapter(tmp_path, "claude")
    assert claude.command == BUILTIN_ADAPTERS["claude"].command
    assert claude.env == {"ANTHROPIC_MODEL": "claude-sonnet"}
    aider = load_adapter(tmp_path, "aider")
    assert aider.command == ("aider", "--message-file", "{prompt_file}", "--yes")
    assert aider.mcp_config == "none"


def test_unknown_harnesses_and_misplaced_commands_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="unknown harness 'robot'"):
        load_adapter(tmp_path, "robot")
    with pytest.raises(InvalidInput, match="needs --command"):
        load_adapter(tmp_path, "custom")
    with pytest.raises(InvalidInput, match="is for --harness custom"):
        load_adapter(tmp_path, "claude", "claude -p hi")


def test_durations_read_like_people_write_them() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "30m", "2h", "1d")] == [90, 90, 1800, 7200, 86400]
    with pytest.raises(InvalidInput, match="not a duration"):
        parse_duration("soon")


def test_the_script_worker_edits_literal_files_and_gives_a_glob_a_file_of_its_own() -> None:
    assert concrete_files(["src/api.py", "db/migrations/**", "web/*.tsx"], "jp-a1.2") == [
        "src/api.py",
        "db/migrations/jp-a1.2.md",
        "web/jp-a1.2.tsx",
    ]
    assert concrete_files([], "jp-a1") == ["tasks/jp-a1.md"]


# --- the brief -----------------------------------------------------------------------------------------


def test_the_prompt_carries_the_task_its_dependencies_results_and_the_conflicts(services: Services) -> None:
    planner = Actor("planner")
    worker = Worker("claude-1", (), services.project)
    created = task_queue.create_tasks(
        services.queue,
        planner,
        [
            NewTask(title="Design the schema", ref="schema"),
            NewTask(
                title="Write the API",
                depends_on=["schema"],
                files=["src/api.py"],
                description="JSON over HTTP.",
                acceptance="curl works",
            ),
        ],
    )
    schema_id, api_id = created[0].id, created[1].id
    designer = Actor("designer")
    task_queue.claim_task(services.queue, designer, schema_id)
    task_queue.complete_task(
        services.queue, designer, schema_id, "users(id, email) in db/schema.sql", files_touched=["db/schema.sql"]
    )
    reserve_files(services.reservations, "codex-2", ["src/**"], task_id="jp-other", reason="refactor")
    task, _, context = claim(services, worker)
    assert task is not None and task.id == api_id
    prompt = render_prompt(brief_for(services.queue, task, context), {"task_id": task.id, "agent": worker.name})
    assert f"Task id: {api_id}\nTitle: Write the API" in prompt
    assert "JSON over HTTP." in prompt and "curl works" in prompt and "Planned files: src/api.py" in prompt
    assert f"- {schema_id} Design the schema: users(id, email) in db/schema.sql [files: db/schema.sql]" in prompt
    assert "src/api.py: codex-2 holds src/** for jp-other" in prompt
    assert f'complete_task(task_id="{api_id}"' in prompt


def test_with_quality_gates_the_prompt_asks_for_a_note_instead_of_completion(services: Services) -> None:
    worker = Worker("claude-1", (), services.project)
    task, context = claimed_task(services, worker)
    prompt = render_prompt(brief_for(services.queue, task, context), {"task_id": task.id}, gated=True)
    assert f'update_task(task_id="{task.id}", note=' in prompt
    assert "Do not call complete_task" in prompt


def test_each_run_gets_its_identity_session_and_mcp_config(services: Services) -> None:
    worker = Worker("claude-1", ("python",), services.project)
    task, context = claimed_task(services, worker, skills=["python"])
    session = str(uuid.uuid4())
    invocation = prepare(
        services, BUILTIN_ADAPTERS["claude"], worker, brief_for(services.queue, task, context), session
    )
    config_path = Path(invocation.argv[invocation.argv.index("--mcp-config") + 1])
    entry = json.loads(config_path.read_text())["mcpServers"]["jetpack"]
    assert entry["command"] == sys.executable and entry["args"] == ["-m", "jetpack", "serve"]
    assert entry["env"]["JETPACK_AGENT"] == "claude-1" and entry["env"]["JETPACK_SKILLS"] == "python"
    assert entry["env"]["JETPACK_PROJECT_DIR"] == str(services.project)
    assert entry["env"]["CLAUDE_CODE_SESSION_ID"] == session
    assert invocation.argv[invocation.argv.index("--session-id") + 1] == session
    assert invocation.env["JETPACK_SESSION_ID"] == session and invocation.env["JETPACK_TASK_ID"] == task.id
    assert invocation.log_path == services.project / ".jetpack" / "logs" / "claude-1" / f"{task.id}.log"
    assert invocation.prompt_file.read_text() == invocation.argv[2]


# --- settling a run from data --------------------------------------------------------------------------


def run(
    services: Services, command: str, worker: Worker, task: Task, context: ClaimContext, timeout: float = 30
) -> RunReport:
    brief = brief_for(services.queue, task, context)
    return anyio.run(lambda: run_task(services, custom_adapter(command), worker, brief, timeout=timeout))


def test_exit_zero_with_changes_in_git_completes_the_task(services: Services) -> None:
    worker = Worker("bot-1", (), services.project)
    task, context = claimed_task(services, worker)
    report = run(services, "sh -c 'echo parser > parser.py'", worker, task, context)
    assert report.outcome is Outcome.COMPLETED_FROM_DIFF and report.files == ["parser.py"]
    done = task_queue.get_task(services.queue, task.id).task
    assert done.state == "done" and done.files_touched == ["parser.py"] and done.assignee == "bot-1"


def test_exit_zero_without_changes_is_a_failed_attempt_whatever_it_printed(services: Services) -> None:
    worker = Worker("bot-1", (), services.project)
    task, context = claimed_task(services, worker)
    report = run(services, "sh -c 'echo Task completed successfully!'", worker, task, context)
    assert report.outcome is Outcome.FAILED
    again = task_queue.get_task(services.queue, task.id).task
    assert again.state == "ready" and again.attempts == 1 and again.assignee is None
    assert "Task completed successfully!" in report.log_path.read_text()


def test_a_non_zero_exit_is_a_failed_attempt_even_with_changes(services: Services) -> None:
    worker = Worker("bot-1", (), services.project)
    task, context = claimed_task(services, worker)
    report = run(services, "sh -c 'echo half > half.py; exit 4'", worker, task, context)
    assert report.outcome is Outcome.FAILED and report.exit_code == 4
    assert task_queue.get_task(services.queue, task.id).task.attempts == 1


def test_a_timeout_kills_the_whole_process_group(services: Services, tmp_path: Path) -> None:
    worker = Worker("bot-1", (), services.project)
    task, context = claimed_task(services, worker)
    child_pid = tmp_path / "child.pid"
    command = f"sh -c 'sleep 60 & echo $! > {child_pid}; wait'"
    report = run(services, command, worker, task, context, timeout=1)
    assert report.outcome is Outcome.TIMED_OUT and report.seconds < 15
    pid = int(child_pid.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert task_queue.get_task(services.queue, task.id).task.attempts == 1


def test_a_command_that_cannot_start_fails_the_attempt(services: Services) -> None:
    worker = Worker("bot-1", (), services.project)
    task, context = claimed_task(services, worker)
    report = run(services, "/nonexistent/agent --go", worker, task, context)
    assert report.outcome is Outcome.FAILED and report.exit_code == 127
    assert "could not start" in report.log_path.read_text()


# --- fake claude, codex and gemini on PATH: the documented invocation, acting through MCP ------------------


def fake_path(tmp_path: Path) -> str:
    """A bin directory with the fake agents and a `python3` that is this interpreter, before PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("claude", "codex", "gemini"):
        (bin_dir / name).symlink_to(FAKE_AGENTS / name)
    (bin_dir / "python3").symlink_to(sys.executable)
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def start_swarm(project: Path, harness: str, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        jetpack_command("start", "--agents", "1", "--harness", harness, "--idle-timeout", "30s", "--json"),
        cwd=project,
        env=subprocess_env(project, **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def expected_argv(client: str, project: Path, record: dict[str, Any]) -> list[str]:
    argv = record["argv"]
    prompt = argv[argv.index("-p") + 1] if "-p" in argv else argv[-1]
    if client == "claude":
        config = argv[argv.index("--mcp-config") + 1]
        session = record["env"]["JETPACK_SESSION_ID"]
        return [
            "claude", "-p", prompt, "--mcp-config", config, "--strict-mcp-config", "--allowedTools",
            *CLAUDE_ALLOWED_TOOLS, "--permission-mode", "acceptEdits", "--session-id", session,
        ]  # fmt: skip
    if client == "codex":
        env = ", ".join(
            f"{k} = {json.dumps(v)}"
            for k, v in {
                "JETPACK_PROJECT_DIR": str(project),
                "JETPACK_AGENT": "codex-1",
                "JETPACK_SKILLS": "",
                "CLAUDE_CODE_SESSION_ID": record["env"]["JETPACK_SESSION_ID"],
            }.items()
        )
        return [
            "codex", "exec", "--full-auto", "--skip-git-repo-check", "--cd", str(project),
            "-c", f"mcp_servers.jetpack.command={json.dumps(sys.executable)}",
            "-c", 'mcp_servers.jetpack.args=["-m", "jetpack", "serve"]',
            "-c", f"mcp_servers.jetpack.env={{{env}}}",
            "-c", "mcp_servers.jetpack.startup_timeout_sec=30",
            prompt,
        ]  # fmt: skip
    return ["gemini", "--yolo", "--allowed-mcp-server-names", "jetpack", "-p", prompt]


@pytest.mark.e2e
@pytest.mark.parametrize("client", ["claude", "codex", "gemini"])
def test_each_agent_cli_is_invoked_as_documented_and_completes_its_task_through_mcp(
    client: str, tmp_path: Path
) -> None:
    project = make_repository(tmp_path / "project")
    added = subprocess.run(
        jetpack_command("task", "add", "Write the parser", "--file", "src/parser.py", "--as", "planner", "--json"),
        cwd=project,
        env=subprocess_env(project),
        capture_output=True,
        text=True,
        check=True,
    )
    task_id = json.loads(added.stdout)["created"][0]["id"]
    records = tmp_path / "records"
    summary = start_swarm(project, client, {"PATH": fake_path(tmp_path), "FAKE_AGENT_RECORD_DIR": str(records)})

    assert summary["reason"] == "drained" and summary["completed"] == 1 and summary["tasks"]["done"] == 1
    (record_file,) = records.glob(f"{client}-*.json")
    record = json.loads(record_file.read_text())
    assert record["argv"] == expected_argv(client, project, record)
    prompt = record["argv"][record["argv"].index("-p") + 1] if client != "codex" else record["argv"][-1]
    assert f"Task id: {task_id}\nTitle: Write the parser" in prompt
    assert record["env"]["JETPACK_AGENT"] == f"{client}-1" and record["env"]["JETPACK_TASK_ID"] == task_id
    assert record["cwd"] == str(project)
    if client == "gemini":
        settings = json.loads(Path(record["env"]["GEMINI_CLI_SYSTEM_SETTINGS_PATH"]).read_text())
        server = settings["mcpServers"]["jetpack"]
        assert server["trust"] is True and server["env"]["JETPACK_AGENT"] == "gemini-1"
    detail = subprocess.run(
        jetpack_command("task", "show", task_id, "--json"),
        cwd=project,
        env=subprocess_env(project),
        capture_output=True,
        text=True,
        check=True,
    )
    task = json.loads(detail.stdout)["task"]
    assert task["state"] == "done" and task["assignee"] == f"{client}-1"
    assert task["result_summary"] == f"fake {client} did it"
    # The agent's server took the worker's name over with the run's own session id.
    assert record["identity"]["name"] == f"{client}-1"
    assert record["identity"]["client_session_id"] == record["env"]["JETPACK_SESSION_ID"]


# --- jetpack start refuses what it cannot run ----------------------------------------------------------


def test_start_refuses_an_unknown_strategy_and_a_project_outside_git(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from jetpack.cli.main import main

    inside = make_repository(tmp_path / "repo")
    outside = tmp_path / "plain"
    (outside / ".jetpack").mkdir(parents=True)
    (outside / ".jetpack" / "config.toml").write_text(CONFIG)
    runner = CliRunner()
    strategy = runner.invoke(main, ["--project", str(inside), "start", "--strategy", "fastest-first"])
    assert strategy.exit_code == 1
    assert "unknown strategy 'fastest-first'; choose one of first-fit, best-fit" in strategy.output
    no_git = runner.invoke(main, ["--project", str(outside), "start", "--harness", "script"])
    assert no_git.exit_code == 1 and "is not a git repository" in no_git.output
    no_command = runner.invoke(main, ["--project", str(inside), "start", "--harness", "custom"])
    assert no_command.exit_code == 1 and "needs --command" in no_command.output
