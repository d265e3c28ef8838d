"""``jetpack quality …``: record a baseline of the project's checks, compare against it, look back."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from jetpack.cli.app import JetpackGroup, app_of, as_option, cli_actor, json_option
from jetpack.cli.output import emit_json, table
from jetpack.quality import (
    QualityContext,
    QualitySnapshot,
    get_snapshot,
    latest_baseline,
    recent_snapshots,
    record_baseline,
    run_check,
)

dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Run the commands here (default: the project directory), e.g. a worker's git worktree.",
)


@click.group(cls=JetpackGroup)
def quality() -> None:
    """Quality gates: the project's tests, lint, type and build commands against a baseline.

    Configure the commands in [quality] of .jetpack/config.toml (docs/quality.md).

    \b
    Example:
      jetpack quality baseline          record what passes and fails today
      jetpack quality check             exit 1 if anything got worse since
      jetpack quality show 12
    """


def _context(ctx: click.Context) -> QualityContext:
    app = app_of(ctx)
    return QualityContext.for_settings(app.settings, app.store)


@quality.command("baseline")
@dir_option
@as_option
@json_option
@click.pass_context
def baseline_command(ctx: click.Context, directory: Path | None, as_name: str | None, as_json: bool) -> None:
    """Run every configured command and record the results as the baseline.

    Failures already present then (legacy errors) will not block later checks.

    \b
    Example:
      jetpack quality baseline --json
    """
    actor = cli_actor(app_of(ctx), as_name)
    snapshot = record_baseline(_context(ctx), actor.name, cwd=directory)
    if as_json:
        emit_json(snapshot)
        return
    click.echo(f"baseline #{snapshot.id} recorded{_where(snapshot)}")
    _results_table(snapshot, None)


@quality.command("check")
@click.option("--task", "task_id", help="The task this check is for (recorded with it).")
@dir_option
@as_option
@json_option
@click.pass_context
def check_command(
    ctx: click.Context, task_id: str | None, directory: Path | None, as_name: str | None, as_json: bool
) -> None:
    """Run every configured command and compare with the latest baseline; exit 1 on a regression.

    A regression is more failing tests, new lint or type errors, a broken build, or coverage
    down more than quality.coverage_drop_points; failures already in the baseline do not count.

    \b
    Example:
      jetpack quality check || echo "something got worse"
    """
    actor = cli_actor(app_of(ctx), as_name)
    check = run_check(_context(ctx), actor.name, cwd=directory, task_id=task_id)
    if as_json:
        emit_json(check)
    else:
        click.echo(f"check #{check.snapshot.id} against baseline #{check.baseline.id}{_where(check.snapshot)}")
        _results_table(check.snapshot, check.baseline)
        _verdict(check.snapshot)
    if not check.verdict.passed:
        sys.exit(1)


@quality.command("show")
@click.argument("snapshot_id", required=False, type=int)
@click.option("--task", "task_id", help="Only the checks of this task.")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@json_option
@click.pass_context
def show_command(ctx: click.Context, snapshot_id: int | None, task_id: str | None, limit: int, as_json: bool) -> None:
    """Show one snapshot in detail, or the latest baseline and the recent snapshots.

    \b
    Example:
      jetpack quality show
      jetpack quality show 12 --json
    """
    quality_ctx = _context(ctx)
    if snapshot_id is not None:
        snapshot = get_snapshot(quality_ctx, snapshot_id)
        if as_json:
            emit_json(snapshot)
            return
        base = get_snapshot(quality_ctx, snapshot.baseline_id) if snapshot.baseline_id else None
        click.echo(f"{snapshot.kind.value} #{snapshot.id} by {snapshot.actor}{_where(snapshot)}")
        _results_table(snapshot, base)
        _verdict(snapshot)
        for result in snapshot.results:
            if not result.ok and result.output_tail.strip():
                tail = "\n".join(result.output_tail.strip().splitlines()[-15:])
                click.echo(f"\n--- {result.gate}: end of output ---\n{tail}")
        return
    snapshots = recent_snapshots(quality_ctx, limit=limit, task_id=task_id)
    baseline = latest_baseline(quality_ctx)
    if as_json:
        emit_json({"baseline": baseline.model_dump(mode="json") if baseline else None, "recent": snapshots})
        return
    if baseline is None:
        click.echo("no baseline yet: run `jetpack quality baseline`")
    else:
        click.echo(f"baseline #{baseline.id}{_where(baseline)}")
        _results_table(baseline, None)
    if snapshots:
        click.echo()
        table(
            ["id", "kind", "at", "commit", "task", "result"],
            [
                (
                    s.id,
                    s.kind.value,
                    f"{s.created_at:%Y-%m-%d %H:%M:%S}",
                    (s.commit or "")[:10] + ("+" if s.dirty else ""),
                    s.task_id or "",
                    "" if s.passed is None else "passed" if s.passed else f"{len(s.regressions)} regression(s)",
                )
                for s in snapshots
            ],
        )


def _where(snapshot: QualitySnapshot) -> str:
    if not snapshot.commit:
        return f" in {snapshot.directory}"
    return f" at {snapshot.commit[:12]}{' (with uncommitted changes)' if snapshot.dirty else ''}"


def _results_table(snapshot: QualitySnapshot, baseline: QualitySnapshot | None) -> None:
    headers = ["gate", "result", *(["baseline"] if baseline else []), "time", "command"]
    rows = []
    for result in snapshot.results:
        before = baseline.result(result.gate) if baseline else None
        row = [result.gate, result.describe()]
        if baseline:
            row.append(before.describe() if before else "-")
        rows.append([*row, f"{result.duration_ms / 1000:.1f}s", result.command])
    table(headers, rows)


def _verdict(snapshot: QualitySnapshot) -> None:
    if snapshot.passed is None:
        return
    if snapshot.passed:
        click.echo("\npassed: nothing got worse than the baseline")
    else:
        click.echo("\nREGRESSION:")
        for regression in snapshot.regressions:
            click.echo(f"  {regression.gate}: {regression.message}")
            for item in regression.new_items[:10]:
                click.echo(f"      {item}")
    for note in snapshot.notes:
        click.echo(f"  note: {note}")
