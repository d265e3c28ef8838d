"""Running one claimed task with an adapter: brief the agent, spawn it, watch it, time it out.

The agent runs in its own process group (a timeout or a stop kills the whole group: the agent and
the Jetpack server it launched), with its output in ``.jetpack/logs/AGENT/TASK.log`` and its prompt
beside it in ``TASK.prompt.md``. What happened is then decided from data (:mod:`.outcome`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import anyio
import anyio.abc

from jetpack.config import STATE_DIR
from jetpack.harness import gitwork
from jetpack.harness.adapters import (
    Adapter,
    ServerEntry,
    claude_mcp_config,
    codex_overrides,
    command_line,
    fill,
    gemini_settings,
)
from jetpack.harness.outcome import RunReport, Services, Worker, settle
from jetpack.harness.prompt import TaskBrief, render_prompt
from jetpack.tasks import Task

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
KILL_GRACE_SECONDS = 5.0  # between SIGTERM and SIGKILL of a process group
LEFTOVER_GRACE_SECONDS = 2.0  # how long an agent's children may outlive it (its MCP server closing)
SESSION_VARIABLE = "CLAUDE_CODE_SESSION_ID"
# Inherited, it would make every agent look like one client session (jetpack start run inside Claude Code).
_NOT_INHERITED = (SESSION_VARIABLE,)


@dataclass
class RunControl:
    """Shared with the supervisor: set ``stop_requested`` to kill the run's process group."""

    stop_requested: bool = False


@dataclass(frozen=True)
class Invocation:
    argv: list[str]
    env: dict[str, str]
    stdin: str | None
    prompt_file: Path
    log_path: Path
    session_id: str


def prepare(
    services: Services, adapter: Adapter, worker: Worker, brief: TaskBrief, session_id: str | None = None
) -> Invocation:
    """Write the prompt and the agent's MCP config, and build its command line and environment."""
    task = brief.task
    session_id = session_id or str(uuid.uuid4())
    agent_logs = services.logs_dir / worker.name
    agent_logs.mkdir(parents=True, exist_ok=True)
    safe_id = task.id.replace("/", "_")
    prompt_file = agent_logs / f"{safe_id}.prompt.md"
    identity = {
        "JETPACK_PROJECT_DIR": str(services.project),
        "JETPACK_AGENT": worker.name,
        "JETPACK_SKILLS": ",".join(worker.skills),
    }
    # The run's session id reaches the server as its client session (Claude Code's variable, which
    # Jetpack reads): that lets the server take over the name the swarm registered for this run.
    entry = ServerEntry.for_worker({**identity, **services.server_env, SESSION_VARIABLE: session_id})
    config_dir = services.project / STATE_DIR / "harness" / worker.name
    config_dir.mkdir(parents=True, exist_ok=True)
    mcp_config = ""
    mcp_args: list[str] = []
    if adapter.mcp_config == "claude":
        mcp_config = _write_json(config_dir / "mcp.json", claude_mcp_config(entry))
    elif adapter.mcp_config == "gemini":
        mcp_config = _write_json(config_dir / "gemini-settings.json", gemini_settings(entry))
    elif adapter.mcp_config == "codex":
        mcp_args = codex_overrides(entry)
    values = {
        "task_id": task.id,
        "agent": worker.name,
        "skills": ",".join(worker.skills),
        "session_id": session_id,
        "workdir": str(worker.workdir),
        "project": str(services.project),
        "python": sys.executable,
        "mcp_config": mcp_config,
        "prompt_file": str(prompt_file),
    }
    prompt = render_prompt(brief, values, adapter.prompt_file, gated=services.gated)
    prompt_file.write_text(prompt)
    values["prompt"] = prompt
    env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}
    env.update(identity)
    env.update(services.server_env)
    env.update({"JETPACK_TASK_ID": task.id, "JETPACK_SESSION_ID": session_id})
    if services.gated:
        env["JETPACK_HARNESS_COMPLETES"] = "1"  # the harness completes after the quality gates
    env.update({key: fill(value, values) for key, value in adapter.env.items()})
    return Invocation(
        argv=command_line(adapter, values, mcp_args),
        env=env,
        stdin=prompt if adapter.stdin else None,
        prompt_file=prompt_file,
        log_path=agent_logs / f"{safe_id}.log",
        session_id=session_id,
    )


def _write_json(path: Path, document: object) -> str:
    path.write_text(json.dumps(document, indent=2) + "\n")
    return str(path)


async def run_task(
    services: Services,
    adapter: Adapter,
    worker: Worker,
    brief: TaskBrief,
    *,
    timeout: float,
    session_id: str | None = None,
    control: RunControl | None = None,
) -> RunReport:
    """Run the agent on its claimed task, wait (at most ``timeout`` seconds), and settle the task."""
    control = control or RunControl()
    invocation = prepare(services, adapter, worker, brief, session_id)
    before = await anyio.to_thread.run_sync(_snapshot, worker.workdir)
    started = time.monotonic()
    with invocation.log_path.open("a") as log_file:
        log_file.write(_header(worker, brief.task, invocation))
        log_file.flush()
        exit_code, ended_by = await _spawn_and_wait(invocation, worker.workdir, log_file, timeout, control)
        seconds = time.monotonic() - started
        report = await anyio.to_thread.run_sync(settle, services, worker, brief.task, exit_code, ended_by, before)
        report.seconds, report.log_path, report.session_id = seconds, invocation.log_path, invocation.session_id
        log_file.write(f"=== {report.outcome.value}: exit {exit_code} after {seconds:.1f}s. {report.note}\n")
    return report


def _header(worker: Worker, task: Task, invocation: Invocation) -> str:
    shown = [a if len(a) < 400 else f"<prompt: {invocation.prompt_file}>" for a in invocation.argv]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"=== {now} UTC {worker.name} on {task.id} (attempt {task.attempts + 1}/{task.max_attempts}), "
        f"session {invocation.session_id}, in {worker.workdir}\n$ {shlex.join(shown)}\n"
    )


async def _spawn_and_wait(
    invocation: Invocation,
    cwd: Path,
    log_file: IO[str],
    timeout: float,
    control: RunControl,
) -> tuple[int | None, str | None]:
    """Returns the exit code and, when Jetpack ended the run, why ("timeout" or "stop")."""
    try:
        process = await anyio.open_process(
            invocation.argv,
            stdin=subprocess.PIPE if invocation.stdin is not None else subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=invocation.env,
            start_new_session=True,  # its own process group, killed as a whole
        )
    except OSError as error:
        log_file.write(f"=== could not start {invocation.argv[0]!r}: {error}\n")
        return 127, None
    if invocation.stdin is not None and process.stdin is not None:
        with contextlib.suppress(anyio.BrokenResourceError, OSError):
            await process.stdin.send(invocation.stdin.encode())
        await process.stdin.aclose()
    deadline = time.monotonic() + timeout
    ended_by = None
    while not _exited(process):
        with anyio.move_on_after(POLL_SECONDS):
            await process.wait()
        if _exited(process):
            break
        if control.stop_requested or time.monotonic() > deadline:
            ended_by = "stop" if control.stop_requested else "timeout"
            await kill_group(process.pid, process)
            break
    await process.wait()
    await _reap_leftovers(process.pid)
    return process.returncode, ended_by


async def kill_group(pgid: int, process: anyio.abc.Process | None = None) -> None:
    """SIGTERM the process group, then SIGKILL whatever is still there after a grace period."""
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE_SECONDS
    while time.monotonic() < deadline and _group_alive(pgid):
        if process is not None and process.returncode is None:
            with anyio.move_on_after(POLL_SECONDS):
                await process.wait()
        else:
            await anyio.sleep(POLL_SECONDS)
    _signal_group(pgid, signal.SIGKILL)


async def _reap_leftovers(pgid: int) -> None:
    """The agent is gone; its MCP server notices the closed pipe and ends its session. Whatever is
    still in the group after a short grace is killed."""
    deadline = time.monotonic() + LEFTOVER_GRACE_SECONDS
    while _group_alive(pgid) and time.monotonic() < deadline:
        await anyio.sleep(POLL_SECONDS)
    if _group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)


def _exited(process: anyio.abc.Process) -> bool:
    return process.returncode is not None


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _snapshot(workdir: Path) -> gitwork.TreeSnapshot | None:
    return gitwork.snapshot(workdir) if gitwork.is_repository(workdir) else None
