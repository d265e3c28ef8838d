"""``jetpack load PLAN``: a whole plan (markdown, JSON or YAML) into the queue, or a dry run of it."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from jetpack.cli.app import app_of, as_option, cli_actor, json_option
from jetpack.cli.output import emit_json
from jetpack.plans import (
    PlanFormat,
    PlanPreview,
    check_existing_dependencies,
    load_plan,
    parse_plan,
    parse_plan_file,
    preview_plan,
)


@click.command("load")
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check the plan and show what it would create; create nothing.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice([f.value for f in PlanFormat]),
    help="The plan's format (default: from the file name; markdown for '-').",
)
@as_option
@json_option
@click.pass_context
def load_command(
    ctx: click.Context, plan_path: Path, dry_run: bool, fmt: str | None, as_name: str | None, as_json: bool
) -> None:
    """Create the task tree a plan describes, all at once or not at all ('-' reads stdin).

    Markdown: '#' headings are epics, '##' tasks, list items subtasks; 'Files:' lines are planned
    files; [depends: title or ref], [skills: a, b], [p1], [est: 30m], [ref: name] markers
    (docs/plans.md). Problems are reported with their line numbers and nothing is created.

    \b
    Examples:
      jetpack load plan.md --dry-run      the tree, the ids it would get, the critical path
      jetpack load plan.md
      jetpack load tasks.yaml --json
    """
    app = app_of(ctx)
    tasks = app.settings.tasks
    chosen = PlanFormat(fmt) if fmt else None
    if str(plan_path) == "-":
        text = sys.stdin.read()
        plan = parse_plan(
            text, chosen or PlanFormat.MARKDOWN, source="<stdin>", max_depth=tasks.max_depth, id_prefix=tasks.id_prefix
        )
    else:
        plan = parse_plan_file(plan_path, chosen, max_depth=tasks.max_depth, id_prefix=tasks.id_prefix)
    if dry_run:
        if plan.existing_ids():  # only then is the database needed
            check_existing_dependencies(app.queue(), plan)
        preview = preview_plan(plan)
    else:
        preview = load_plan(app.queue(), cli_actor(app, as_name), plan)
    if as_json:
        emit_json(preview)
        return
    render_preview(preview, id_prefix=tasks.id_prefix)


def render_preview(preview: PlanPreview, *, id_prefix: str) -> None:
    """The tree, one task a line, with its files and dependencies below it, then the critical path."""
    dependencies = _count(preview.dependencies, "dependency", "dependencies")
    tasks = _count(preview.count, "task", "tasks")
    if preview.created:
        ready = sum(1 for t in preview.tasks if t.state == "ready")
        click.echo(f"Created {tasks} from {preview.source} ({dependencies}; {ready} ready now):")
    else:
        click.echo(
            f"Dry run: {preview.source} would create {tasks} ({preview.leaves} to work on, "
            f"{dependencies}); nothing was created."
        )
    click.echo()
    titles = {t.id: t.title for t in preview.tasks}
    width = max(len(t.id) for t in preview.tasks)
    for task in preview.tasks:
        indent = "  " * task.id.count(".")
        notes = [f"p{task.priority}"] if task.priority != 2 else []
        if task.estimate_minutes is not None:
            notes.append(f"~{format_minutes(task.estimate_minutes)}")
        if task.skills:
            notes.append("skills: " + ", ".join(task.skills))
        if task.state:
            notes.append(task.state)
        click.echo(f"{task.id:<{width}}  {indent}{task.title}" + (f"  [{'; '.join(notes)}]" if notes else ""))
        under = " " * (width + 2) + indent + "    "
        if task.files:
            click.echo(f"{under}files: {', '.join(task.files)}")
        if task.depends_on:
            after = ", ".join(f"{d} ({titles[d]})" if d in titles else d for d in task.depends_on)
            click.echo(f"{under}after: {after}")
    path = preview.critical_path
    if path.ids:
        length = _count(path.tasks, "task", "tasks")
        total = f", {format_minutes(path.minutes)}" if path.minutes is not None else " (no estimates: counted in tasks)"
        click.echo(f"\nCritical path ({length}{total}):")
        for number, (task_id, title) in enumerate(zip(path.ids, path.titles, strict=True)):
            click.echo(f"  {'→ ' if number else '  '}{task_id:<{width}}  {title}")
    if not preview.created:
        click.echo(
            f"\n{id_prefix}-?N stands for a root id drawn when the plan is loaded; subtask numbers are as shown."
        )


def format_minutes(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    if not hours:
        return f"{rest}m"
    return f"{hours}h" + (f" {rest:02d}m" if rest else "")


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"
