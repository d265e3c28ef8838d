"""``jetpack task …``: the task queue from the command line (the same services the MCP tools use)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from jetpack import tasks as task_queue
from jetpack.cli.app import JetpackGroup, app_of, as_option, cli_actor, json_option
from jetpack.cli.output import emit_json, task_table
from jetpack.config import SWARM_STRATEGIES
from jetpack.errors import InvalidInput
from jetpack.tasks.model import TaskState, compact, parse_new_tasks

force_option = click.option(
    "--force",
    is_flag=True,
    help="Act as an operator: allowed on tasks claimed by others (recorded in events).",
)


@click.group(cls=JetpackGroup)
def task() -> None:
    """Create, inspect, claim and finish tasks.

    \b
    Example:
      jetpack task add "Build the login page" --priority 1 --skill react
      jetpack task ready
      jetpack task claim && jetpack task done jp-a3f8 --summary "login page in src/login.tsx"
    """


@task.command("add")
@click.argument("title", required=False)
@click.option("--description", "-d", default="", help="What to do and why.")
@click.option("--acceptance", default="", help="How to know it is done.")
@click.option("--priority", "-p", type=click.IntRange(0, 4), default=2, show_default=True, help="0 highest.")
@click.option("--parent", help="Make it a subtask of this task id.")
@click.option("--depends-on", "depends_on", multiple=True, metavar="ID", help="A task that must be done first.")
@click.option("--skill", "skills", multiple=True, help="A skill the claimer must hold (repeatable).")
@click.option("--file", "files", multiple=True, help="A file or glob the task will touch (repeatable).")
@click.option("--label", "labels", multiple=True, help="A label (repeatable).")
@click.option("--estimate", type=click.IntRange(0, 100_000), help="Estimate in minutes.")
@click.option(
    "--from-file",
    type=click.File("r"),
    help="Create a whole batch from JSON: a list of tasks shaped like create_tasks' `tasks` ('-' = stdin).",
)
@as_option
@json_option
@click.pass_context
def add_task(
    ctx: click.Context,
    title: str | None,
    description: str,
    acceptance: str,
    priority: int,
    parent: str | None,
    depends_on: tuple[str, ...],
    skills: tuple[str, ...],
    files: tuple[str, ...],
    labels: tuple[str, ...],
    estimate: int | None,
    from_file: Any,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Create a task (or a batch from --from-file) and print its id.

    \b
    Examples:
      jetpack task add "Write the API" --skill python --file 'src/api/**'
      jetpack task add "Add tests" --parent jp-a3f8 --depends-on jp-a3f8.1
      jetpack task add --from-file plan.json --json
    """
    app = app_of(ctx)
    if from_file is not None:
        if title:
            raise InvalidInput("give either a TITLE or --from-file, not both")
        try:
            raw = json.load(from_file)
        except ValueError as error:
            raise InvalidInput(f"{from_file.name} is not valid JSON: {error}") from None
        specs = parse_new_tasks(raw if isinstance(raw, list) else raw.get("tasks", [raw]))
    elif title:
        specs = parse_new_tasks(
            [
                {
                    "title": title,
                    "description": description,
                    "acceptance": acceptance,
                    "priority": priority,
                    "parent": parent,
                    "depends_on": list(depends_on),
                    "skills": list(skills),
                    "files": list(files),
                    "labels": list(labels),
                    "estimate_minutes": estimate,
                }
            ]
        )
    else:
        raise InvalidInput('give a TITLE, e.g. jetpack task add "Write the API", or --from-file plan.json')
    created = task_queue.create_tasks(app.queue(), cli_actor(app, as_name), specs)
    if as_json:
        emit_json(
            {
                "created": [c.model_dump(mode="json", exclude_none=True) for c in created],
                "count": len(created),
            }
        )
        return
    for item in created:
        click.echo(f"{item.id}  {item.state.value:<6}  {item.title}")


@task.command("list")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in TaskState]),
    help="Only these states (repeatable; default: unfinished).",
)
@click.option("--all", "all_states", is_flag=True, help="Include done, failed and cancelled tasks.")
@click.option("--parent", help="Only direct subtasks of this task.")
@click.option("--assignee", help="Only tasks held by this agent.")
@click.option("--label")
@click.option("--skill")
@click.option("--text", help="Substring of the title.")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@click.option("--cursor", help="Continue from a previous page's next_cursor.")
@json_option
@click.pass_context
def list_command(
    ctx: click.Context,
    states: tuple[str, ...],
    all_states: bool,
    parent: str | None,
    assignee: str | None,
    label: str | None,
    skill: str | None,
    text: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List tasks in claim order (priority, then age).

    \b
    Example:
      jetpack task list --state claimed --json
    """
    chosen = [TaskState(s) for s in states] or (list(TaskState) if all_states else None)
    page = task_queue.list_tasks(
        app_of(ctx).queue(),
        states=chosen,
        parent=parent,
        assignee=assignee,
        label=label,
        skill=skill,
        text=text,
        limit=limit,
        cursor=cursor,
    )
    if as_json:
        emit_json(page)
        return
    task_table(page.tasks, empty="no tasks match")
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}")


@task.command("ready")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@json_option
@click.pass_context
def ready_command(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Show the ready queue in the order claims take it.

    \b
    Example:
      jetpack task ready --limit 5
    """
    page = task_queue.ready_tasks(app_of(ctx).queue(), limit=limit)
    if as_json:
        emit_json(page)
        return
    task_table(page.tasks, empty="nothing is ready")


@task.command("show")
@click.argument("task_id")
@json_option
@click.pass_context
def show_command(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Show one task with its dependencies, subtasks and recent events.

    \b
    Example:
      jetpack task show jp-a3f8.1
    """
    detail = task_queue.get_task(app_of(ctx).queue(), task_id)
    if as_json:
        emit_json(detail)
        return
    t = detail.task
    click.echo(f"{t.id}  {t.title}")
    click.echo(f"  state: {t.state.value}   priority: {t.priority}   attempts: {t.attempts}/{t.max_attempts}")
    if t.assignee:
        lease = f" (lease until {t.lease_expires_at:%H:%M:%SZ})" if t.lease_expires_at else ""
        click.echo(f"  assignee: {t.assignee}{lease}")
    for label, value in (
        ("skills", ", ".join(t.skills)),
        ("files", ", ".join(t.files)),
        ("blocked", t.blocked_reason),
        ("waiting on", ", ".join(detail.waiting_on)),
        (
            "progress",
            f"{detail.progress.done}/{detail.progress.total} subtasks done" if detail.progress else None,
        ),
        ("note", t.progress_note),
        ("result", t.result_summary),
    ):
        if value:
            click.echo(f"  {label}: {value}")
    if t.description:
        click.echo("")
        click.echo("  " + t.description.replace("\n", "\n  "))
    for heading, links in (("depends on", detail.depends_on), ("needed by", detail.dependents)):
        if links:
            click.echo(f"\n  {heading}:")
            for link in links:
                click.echo(f"    {link.id}  {link.kind.value:<15} {link.state.value:<11} {link.title}")
    if detail.children:
        click.echo("\n  subtasks:")
        for child in detail.children:
            click.echo(f"    {child.id}  {child.state.value:<11} {child.title}")
    if detail.recent_events:
        click.echo("\n  events:")
        for event in detail.recent_events:
            change = f"{event.before or '-'} -> {event.after}" if event.after != event.before else ""
            click.echo(
                f"    {event.at:%Y-%m-%d %H:%M:%S}  {event.actor:<14} {event.kind:<15} {change} {event.note or ''}"
            )


@task.command("dep")
@click.argument("task_id")
@click.argument("depends_on")
@click.option(
    "--kind",
    type=click.Choice([k.value for k in task_queue.DependencyKind]),
    default="blocks",
    show_default=True,
)
@as_option
@json_option
@click.pass_context
def dep_command(
    ctx: click.Context, task_id: str, depends_on: str, kind: str, as_name: str | None, as_json: bool
) -> None:
    """Make TASK_ID depend on DEPENDS_ON (refused if it would create a cycle).

    \b
    Example:
      jetpack task dep jp-b2c4 jp-a3f8      # jp-b2c4 waits until jp-a3f8 is done
    """
    app = app_of(ctx)
    result = task_queue.add_dependency(
        app.queue(), cli_actor(app, as_name), task_id, depends_on, task_queue.DependencyKind(kind)
    )
    if as_json:
        emit_json(result)
        return
    click.echo(f"{task_id} depends on {depends_on} ({kind}): {result['result']}")


@task.command("claim")
@click.argument("task_id", required=False)
@click.option("--skills", help="Comma-separated skills to claim with (default: $JETPACK_SKILLS).")
@click.option(
    "--strategy",
    type=click.Choice(SWARM_STRATEGIES),
    help="How to pick the task (default: [swarm] strategy in the config; docs/swarm.md).",
)
@click.option("--batch", type=click.IntRange(1, 20), default=1, help="Also claim related ready tasks, up to this many.")
@as_option
@json_option
@click.pass_context
def claim_command(
    ctx: click.Context,
    task_id: str | None,
    skills: str | None,
    strategy: str | None,
    batch: int,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Claim TASK_ID, or the next ready task you have the skills for.

    \b
    Example:
      jetpack task claim --as blue-heron --skills python --strategy graph-prioritized
    """
    app = app_of(ctx)
    from jetpack import workloop  # numpy and the memory stack load only here

    task, reason, context = workloop.claim_for_agent(
        app.queue(),
        app.reservations(),
        app.mail(),
        app.memory(),
        cli_actor(app, as_name, skills),
        task_id,
        strategy=strategy,
        batch=batch,
    )
    if as_json:
        if task is None:
            emit_json({"id": None, "reason": reason})
            return
        emit_json({**compact(task), **compact(context)})
        return
    if task is None:
        click.echo(reason)
        sys.exit(3)
    click.echo(f"claimed {task.id}  {task.title}  (lease until {task.lease_expires_at:%H:%M:%SZ})")
    for other in context.also_claimed:
        click.echo(f"claimed {other.id}  {other.title}  (same batch)")
    for conflict in context.conflicts:
        click.echo(f"  conflict: {conflict.path} overlaps {conflict.holder}'s {conflict.pattern}")
    for hit in context.memories:
        click.echo(f"  memory {hit.id} ({hit.layer.value}): {hit.snippet}")
    if context.unread_mail:
        click.echo(f"  unread mail: {context.unread_mail} (jetpack mail inbox)")


@task.command("done")
@click.argument("task_id")
@click.option("--summary", "-m", default="", help="What was done and where.")
@click.option("--file", "files", multiple=True, help="A file you touched (repeatable; recorded).")
@click.option("--learning", "learnings", multiple=True, help="An insight worth remembering (repeatable).")
@force_option
@as_option
@json_option
@click.pass_context
def done_command(
    ctx: click.Context,
    task_id: str,
    summary: str,
    files: tuple[str, ...],
    learnings: tuple[str, ...],
    force: bool,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Complete a task you hold; tasks waiting on it become ready.

    \b
    Example:
      jetpack task done jp-a3f8.1 -m "JWT signing in auth/jwt.py"
    """
    app = app_of(ctx)
    from jetpack import workloop  # numpy and the memory stack load only here

    result = workloop.complete_for_agent(
        app.queue(),
        app.reservations(),
        app.memory(),
        cli_actor(app, as_name, force=force),
        task_id,
        summary,
        list(files),
        list(learnings),
    )
    if as_json:
        emit_json(result)
        return
    click.echo(f"{result.id} done")


@task.command("fail")
@click.argument("task_id")
@click.option("--reason", "-r", required=True, help="What went wrong.")
@click.option(
    "--mode",
    type=click.Choice([m.value for m in task_queue.FailMode]),
    default="retry",
    show_default=True,
    help="retry: requeue as a failed attempt; give_up: mark failed; release: hand back without an attempt.",
)
@force_option
@as_option
@json_option
@click.pass_context
def fail_command(
    ctx: click.Context, task_id: str, reason: str, mode: str, force: bool, as_name: str | None, as_json: bool
) -> None:
    """Give up a claim: retry later, fail for good, or release it.

    \b
    Example:
      jetpack task fail jp-a3f8.1 -r "tests need a database" --mode release
    """
    app = app_of(ctx)
    from jetpack import workloop  # numpy and the memory stack load only here

    result = workloop.fail_for_agent(
        app.queue(), app.memory(), cli_actor(app, as_name, force=force), task_id, reason, task_queue.FailMode(mode)
    )
    if as_json:
        emit_json(result)
        return
    click.echo(f"{result.id} is now {result.state.value} (attempts {result.attempts}/{result.max_attempts})")


def _simple_change(name: str, help_text: str, example: str) -> Any:
    """Commands that change one task's state with an optional reason: block, unblock, cancel, reopen."""

    @task.command(name, help=f"{help_text}\n\n\b\nExample:\n  {example}")
    @click.argument("task_id")
    @click.option("--reason", "-r", help="Why (required to block).")
    @force_option
    @as_option
    @json_option
    @click.pass_context
    def command(
        ctx: click.Context, task_id: str, reason: str | None, force: bool, as_name: str | None, as_json: bool
    ) -> None:
        app = app_of(ctx)
        actor = cli_actor(app, as_name, force=force)
        queue = app.queue()
        if name == "block":
            result = task_queue.update_task(queue, actor, task_id, status=task_queue.StatusChange.BLOCKED, note=reason)
        elif name == "unblock":
            result = task_queue.update_task(queue, actor, task_id, status=task_queue.StatusChange.OPEN, note=reason)
        elif name == "cancel":
            result = task_queue.cancel_task(queue, actor, task_id, reason or "cancelled from the CLI")
        else:
            result = task_queue.reopen_task(queue, actor, task_id, reason)
        if as_json:
            emit_json(result)
            return
        click.echo(f"{result.id} is now {result.state.value}")

    return command


_simple_change(
    "block",
    "Block a task you hold, or an unclaimed one, so no one claims it (it needs --reason).",
    'jetpack task block jp-a3f8.1 -r "waiting for API keys"',
)
_simple_change("unblock", "Return a blocked task to the queue.", "jetpack task unblock jp-a3f8.1")
_simple_change(
    "cancel", "Cancel a task and its unfinished subtasks.", 'jetpack task cancel jp-a3f8.2 -r "out of scope"'
)
_simple_change("reopen", "Put a done, failed or cancelled task back in the queue.", "jetpack task reopen jp-a3f8.2")
