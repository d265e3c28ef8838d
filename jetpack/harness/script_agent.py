"""The built-in ``script`` worker: a real MCP client that does one task deterministically.

It is launched by the harness like any agent — with the task id and a Claude-Code-format MCP config
naming the Jetpack server to start — and then, all through MCP:

1. ``claim_task(task_id)`` (the harness claimed it already; claiming again renews the lease);
2. waits for an exclusive reservation of the task's planned files (so no two workers ever edit the
   same file at once), then ``announce_intent`` for them;
3. appends one line naming the task to each planned file (a glob gets a file of its own inside it;
   a task without planned files writes ``tasks/TASK.md``);
4. commits exactly those files (``TASK: title``), as the agent;
5. ``complete_task`` with a summary, the files and the commit (with quality gates configured, a
   progress note instead: the harness completes the task once the gates pass).

For demos and tests. ``JETPACK_SCRIPT_DELAY=SECONDS`` makes each task take that long;
``JETPACK_SCRIPT_STALL=TASK[,TASK]`` makes the first attempt at those tasks hang after reserving
(its pid in ``.jetpack/logs/AGENT/TASK.stalled``), for crash tests.

Usage: python -m jetpack.harness.script_agent --mcp-config FILE --task TASK_ID
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.types import Implementation

from jetpack import __version__
from jetpack.harness.gitwork import GitError, agent_git_env, commit_files
from jetpack.reservations.patterns import literal_prefix

RESERVE_PAUSE = 0.1  # between attempts at an exclusive reservation held by someone else
RESERVE_PATIENCE = 600.0  # then give the task back
CALL_RETRIES = 50  # a tool error that says to call again (the database was busy, reservations moved)
CALL_PAUSE = 0.1
COMMENT = {
    **dict.fromkeys((".py", ".sh", ".toml", ".yaml", ".yml", ".rb", ".cfg", ".ini"), "# "),
    **dict.fromkeys((".js", ".ts", ".tsx", ".jsx", ".go", ".rs", ".java", ".c", ".h", ".cpp", ".kt"), "// "),
    ".sql": "-- ",
}


class ToolFailed(Exception):
    pass


def concrete_files(planned: list[str], task_id: str) -> list[str]:
    """The files the worker edits: literal planned paths as they are, a glob a file of its own."""
    if not planned:
        return [f"tasks/{task_id}.md"]
    files: list[str] = []
    for pattern in planned:
        if not any(c in pattern for c in "*?["):
            files.append(pattern)
            continue
        base = literal_prefix(pattern).strip("/")
        suffix = PurePosixPath(pattern).suffix
        suffix = suffix if suffix and not any(c in suffix for c in "*?[]") else ".md"
        files.append(str(PurePosixPath(base or ".") / f"{task_id}{suffix}"))
    return list(dict.fromkeys(files))


def append_line(workdir: Path, path: str, line: str) -> None:
    target = workdir / path
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = COMMENT.get(target.suffix, "- ")
    existing = target.read_text() if target.exists() else ""
    separator = "" if not existing or existing.endswith("\n") else "\n"
    target.write_text(existing + separator + prefix + line + "\n")


def server_parameters(config_path: Path) -> StdioServerParameters:
    config = json.loads(config_path.read_text())
    entry = config["mcpServers"]["jetpack"]
    return StdioServerParameters(
        command=entry["command"],
        args=list(entry.get("args", [])),
        env={**os.environ, **entry.get("env", {})},
        cwd=os.getcwd(),
    )


async def work(config_path: Path, task_id: str) -> str:
    workdir = Path.cwd()
    agent = os.environ.get("JETPACK_AGENT", "script")
    client_info = Implementation(name="jetpack-script-worker", version=__version__)
    async with Client(server_parameters(config_path), read_timeout_seconds=120, client_info=client_info) as client:

        async def call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
            for _ in range(CALL_RETRIES):
                result = await client.call_tool(name, arguments)
                if not result.is_error:
                    return result.structured_content or {}
                text = "".join(getattr(part, "text", "") for part in result.content)
                if not re.search(r"\bcall (\w+ )?again\b", text):
                    raise ToolFailed(f"{name}: {text}")
                await anyio.sleep(CALL_PAUSE)
            raise ToolFailed(f"{name}: still failing after {CALL_RETRIES} tries")

        task = await call("claim_task", {"task_id": task_id})
        files = concrete_files(list(task.get("files", [])), task_id)
        patterns = list(task.get("files") or files)
        await _reserve_exclusively(call, task_id, patterns)
        await call("announce_intent", {"task_id": task_id, "files": patterns, "summary": f"{agent}: {task['title']}"})
        if task_id in _stall_list() and not task.get("attempts"):
            await _stall(agent, task_id)
        delay = float(os.environ.get("JETPACK_SCRIPT_DELAY") or 0)
        if delay > 0:
            await anyio.sleep(delay)
        for path in files:
            append_line(workdir, path, f"{task_id} {task['title']} (by {agent})")
        try:
            commit = commit_files(workdir, files, f"{task_id}: {task['title']}", env=agent_git_env(agent))
        except GitError as error:
            await call("fail_task", {"task_id": task_id, "reason": f"git commit failed: {error}", "mode": "retry"})
            raise
        summary = f"Appended a line for {task_id} to {', '.join(files)}; commit {commit[:12]}."
        if os.environ.get("JETPACK_HARNESS_COMPLETES") == "1":
            await call("update_task", {"task_id": task_id, "note": summary})  # completed after the quality gates
        else:
            await call("complete_task", {"task_id": task_id, "summary": summary, "files": files})
        return summary


async def _reserve_exclusively(call: Any, task_id: str, patterns: list[str]) -> None:
    deadline = time.monotonic() + RESERVE_PATIENCE
    while True:
        reserved = await call(
            "reserve_files",
            {"paths": patterns, "mode": "exclusive", "task_id": task_id, "reason": f"editing for {task_id}"},
        )
        if reserved.get("recorded"):
            return
        if time.monotonic() > deadline:
            holders = sorted({c["holder"] for c in reserved.get("conflicts", [])})
            reason = f"planned files stayed reserved by {', '.join(holders)} for {RESERVE_PATIENCE:.0f}s"
            await call("fail_task", {"task_id": task_id, "reason": reason, "mode": "release"})
            raise ToolFailed(reason)
        await anyio.sleep(RESERVE_PAUSE)


def _stall_list() -> set[str]:
    return {t.strip() for t in os.environ.get("JETPACK_SCRIPT_STALL", "").split(",") if t.strip()}


async def _stall(agent: str, task_id: str) -> None:
    project = Path(os.environ.get("JETPACK_PROJECT_DIR") or ".")
    marker = project / ".jetpack" / "logs" / agent / f"{task_id}.stalled"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{os.getpid()}\n")
    print(f"stalling on {task_id} as asked (JETPACK_SCRIPT_STALL), pid {os.getpid()}", flush=True)
    supervisor = os.getppid()
    while os.getppid() == supervisor:  # until killed — or orphaned, if the swarm itself was killed
        await anyio.sleep(0.5)
    raise ToolFailed(f"the swarm that started this worker (pid {supervisor}) is gone")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jetpack.harness.script_agent", description=__doc__)
    parser.add_argument("--mcp-config", required=True, type=Path, help="Claude Code format MCP config file")
    parser.add_argument("--task", required=True, help="the claimed task's id")
    options = parser.parse_args(argv)
    try:
        summary = anyio.run(work, options.mcp_config, options.task)
    except Exception as error:
        failures = _expected_failures(error)
        if not failures:
            raise
        for failure in failures:
            print(f"script worker: {failure}", file=sys.stderr)
        return 1
    print(summary)
    return 0


def _expected_failures(error: BaseException) -> list[Exception]:
    """The ToolFailed and GitError in ``error`` (the MCP client's task group wraps them in groups)."""
    if isinstance(error, ToolFailed | GitError):
        return [error]
    if isinstance(error, BaseExceptionGroup):
        return [failure for inner in error.exceptions for failure in _expected_failures(inner)]
    return []


if __name__ == "__main__":
    sys.exit(main())
