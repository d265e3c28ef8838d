"""One swarm member, run as its own OS process by test_stdio_swarm.py (not a test module).

It launches its own `python -m jetpack serve` through the MCP SDK's stdio client, then claims and
completes tasks until claim_task answers id null, and prints one JSON object on stdout:
{"agent", "completed": [ids in order], "errors": [tool errors seen], "final_reason"}.

Usage: python swarm_worker.py PROJECT_DIR AGENT_NAME MODE [drain]   (MODE: legacy | auto)

With `drain`, an empty claim only ends the loop once list_tasks shows no unfinished task at all
(tasks waiting on dependencies held by others become ready later).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

# A tool error the server calls retryable ("call again"); anything else is recorded and fatal.
MAX_RETRIES = 20
# In drain mode, give up (and say so) after waiting this long with nothing to claim.
MAX_IDLE_SECONDS = 30


async def run(project: Path, agent: str, mode: str, drain: bool) -> dict[str, Any]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "JETPACK_PROJECT_DIR": str(project),
        "JETPACK_AGENT": agent,
        # the test that runs the swarm through a hub (jetpack serve --hub) sets these
        **{name: os.environ[name] for name in ("JETPACK_HUB", "XDG_RUNTIME_DIR") if name in os.environ},
    }
    server = StdioServerParameters(command=sys.executable, args=["-m", "jetpack", "serve"], env=env, cwd=str(project))
    completed: list[str] = []
    errors: list[str] = []
    final_reason = None
    idle_since: float | None = None
    async with Client(server, mode=mode, read_timeout_seconds=60) as client:  # type: ignore[arg-type]

        async def call(name: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
            for _ in range(MAX_RETRIES):
                result = await client.call_tool(name, arguments)
                if not result.is_error:
                    return result.structured_content or {}
                text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
                errors.append(f"{name}({arguments}): {text}")
                if "call again" not in text:
                    return None
                await anyio.sleep(0.05)
            return None

        while True:
            claimed = await call("claim_task", {})
            if claimed is None:
                break
            if claimed.get("id") is None:
                final_reason = claimed.get("reason")
                if drain:
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > MAX_IDLE_SECONDS:
                        errors.append(f"nothing to claim for {MAX_IDLE_SECONDS}s: {final_reason}")
                        break
                    unfinished = await call("list_tasks", {"limit": 1})
                    if unfinished is not None and unfinished.get("tasks"):
                        await anyio.sleep(0.02)
                        continue
                break
            idle_since = None
            task_id = claimed["id"]
            if claimed.get("assignee") != agent or claimed.get("state") != "claimed":
                errors.append(f"claim_task returned {claimed}")
                break
            done = await call("complete_task", {"task_id": task_id, "summary": f"done by {agent}"})
            if done is None or done.get("state") != "done" or done.get("id") != task_id:
                errors.append(f"complete_task({task_id}) returned {done}")
                break
            completed.append(task_id)
    return {"agent": agent, "completed": completed, "errors": errors, "final_reason": final_reason}


def main() -> None:
    project, agent, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    drain = sys.argv[4:] == ["drain"]
    report = anyio.run(run, project, agent, mode, drain)
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
