"""``jetpack demo``: a sample project, its ready queue, and one real MCP agent at work."""

from __future__ import annotations

import json
import os
import sys
from importlib import resources
from pathlib import Path

import anyio
import click

from jetpack import tasks as task_queue
from jetpack.actor import Actor
from jetpack.cli.app import CliApp
from jetpack.cli.output import task_table
from jetpack.tasks.model import parse_new_tasks


def run_demo(root: Path) -> None:
    app = CliApp(project=root)
    root.mkdir(parents=True, exist_ok=True)
    click.secho(f"1. A demo project in {root}", bold=True)
    queue = app.queue()
    if task_queue.count_by_state(queue)["ready"] == 0:
        sample = json.loads((resources.files("jetpack.cli") / "sample_tree.json").read_text())
        created = task_queue.create_tasks(queue, Actor("demo-planner"), parse_new_tasks(sample))
        click.echo(f"   loaded a sample plan of {len(created)} tasks:")
        for item in created:
            click.echo(f"   {'  ' * item.id.count('.')}{item.id}  {item.state.value:<5}  {item.title}")
    click.secho("\n2. The ready queue (leaves whose dependencies are done, in claim order)", bold=True)
    task_table(task_queue.ready_tasks(queue).tasks, empty="   nothing is ready")
    app.close()
    click.secho("\n3. An agent connects over MCP (stdio), claims a task and completes it", bold=True)
    anyio.run(_agent_session, root)
    app = CliApp(project=root)
    click.secho("\n4. The ready queue now", bold=True)
    task_table(task_queue.ready_tasks(app.queue()).tasks, empty="   nothing is ready")
    app.close()
    click.echo(f"\nExplore: jetpack --project {root} task list --all   |   jetpack --project {root} status")
    click.echo(f"Register it with Claude Code:  claude mcp add jetpack -e JETPACK_PROJECT_DIR={root} -- jetpack serve")


async def _agent_session(root: Path) -> None:
    from mcp import Client, StdioServerParameters

    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "jetpack", "--project", str(root), "serve"],
        env={
            "JETPACK_AGENT": "demo-agent",
            "JETPACK_SKILLS": "sql,python",
            "PATH": os.environ.get("PATH", ""),
        },
    )
    async with Client(server) as client:
        tools = await client.list_tools()
        click.echo(f"   tools: {', '.join(t.name for t in tools.tools)}")
        claimed = (await client.call_tool("claim_task", {})).structured_content or {}
        if not claimed.get("id"):
            click.echo(f"   claim_task -> {claimed.get('reason')}")
            return
        click.echo(
            f"   claim_task() -> {claimed['id']} {claimed['title']!r} (lease until {claimed['lease_expires_at']})"
        )
        await client.call_tool(
            "update_task",
            {"task_id": claimed["id"], "status": "in_progress", "note": "writing the migration"},
        )
        click.echo("   update_task(status='in_progress')")
        done = await client.call_tool(
            "complete_task",
            {"task_id": claimed["id"], "summary": "users table in db/migrations/0001_users.sql"},
        )
        click.echo(f"   complete_task() -> {(done.structured_content or {}).get('state')}")
