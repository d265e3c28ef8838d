"""An agent that claims one task and then hangs, run as its own OS process by test_crash_recovery.py.

It launches `python -m jetpack serve` through the MCP SDK's stdio client (the env it was started
with passes through), claims the next ready task, prints {"task_id", "server_pid", "agent"} as one
JSON line and sleeps until it is killed.

Usage: python lease_holder.py AGENT_NAME MODE   (MODE: legacy | auto)
"""

from __future__ import annotations

import json
import os
import sys

import anyio
from mcp import Client, StdioServerParameters

PASSED = ("PATH", "PYTHONPATH", "JETPACK_PROJECT_DIR", "JETPACK_LEASE_SECONDS")


async def run(agent: str, mode: str) -> None:
    env = {k: os.environ[k] for k in PASSED if k in os.environ}
    env["JETPACK_AGENT"] = agent
    server = StdioServerParameters(command=sys.executable, args=["-m", "jetpack", "serve"], env=env)
    async with Client(server, mode=mode, read_timeout_seconds=60) as client:  # type: ignore[arg-type]
        record = await client.call_tool("register_agent", {"name": agent})
        assert not record.is_error, record
        claimed = await client.call_tool("claim_task", {})
        assert not claimed.is_error, claimed
        data = claimed.structured_content or {}
        report = {"task_id": data.get("id"), "server_pid": (record.structured_content or {}).get("pid"), "agent": agent}
        sys.stdout.write(json.dumps(report) + "\n")
        sys.stdout.flush()
        await anyio.sleep(3600)


if __name__ == "__main__":
    anyio.run(run, sys.argv[1], sys.argv[2])
