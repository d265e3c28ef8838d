"""How `jetpack agents` and `jetpack status` show agents: state, heartbeat age, the tasks they hold."""

from __future__ import annotations

from collections.abc import Sequence

import click

from jetpack.agents.health import AgentList, AgentStatus, HeldTask, LifecycleContext, list_agents
from jetpack.cli.app import CliApp
from jetpack.cli.output import table
from jetpack.clock import format_ms


def agent_overview(app: CliApp) -> AgentList:
    return list_agents(LifecycleContext(app.queue(), app.settings.agents), limit=500)


def states_summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in counts.items())


def held_summary(tasks: Sequence[HeldTask]) -> str:
    """e.g. ``jp-a3f8 (in_progress, lease 14:05:09Z, over budget)``."""
    parts = []
    for task in tasks:
        lease = f"lease {format_ms(int(task.lease_expires_at.timestamp() * 1000))}" if task.lease_expires_at else ""
        notes = [task.state.value, *([lease] if lease else []), *(["over budget"] if task.over_budget else [])]
        parts.append(f"{task.id} ({', '.join(notes)})")
    return "; ".join(parts)


def agents_table(agents: Sequence[AgentStatus], *, details: bool = True) -> None:
    headers = ["name", "state", "heartbeat", "tasks"]
    if details:
        headers += ["skills", "client"]
    rows = []
    for agent in agents:
        heartbeat = "cli" if agent.cli else f"{agent.heartbeat_age_seconds}s ago"
        row = [agent.name, agent.state.value, heartbeat, held_summary(agent.tasks)]
        if details:
            row += [",".join(agent.skills), agent.client_name or ""]
        rows.append(row)
    table(headers, rows)
    for agent in agents:
        if agent.reason and agent.tasks:
            click.echo(f"  {agent.name}: {agent.reason}")
