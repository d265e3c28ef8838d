"""``jetpack hook install`` and ``jetpack hook check``: enforce file reservations at commit time."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from jetpack.cli.app import CliApp, JetpackGroup
from jetpack.hooks import check as hook_check
from jetpack.hooks.install import CHAINED_NAME, install_hook


@click.group("hook", cls=JetpackGroup)
def hook() -> None:
    """The git pre-commit hook that enforces file reservations.

    A commit touching a path another agent reserved exclusively is blocked; an advisory or
    shared reservation only warns. The committer is $JETPACK_AGENT. See docs/hooks.md.

    \b
    Example:
      jetpack hook install                        once per clone (honours core.hooksPath)
      JETPACK_AGENT=blue-heron git commit -m "…"  the hook runs `jetpack hook check`
      git commit --no-verify                      bypass it once
    """


@hook.command("install")
@click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A directory inside the git repository (default: here).",
)
@click.option(
    "--force",
    is_flag=True,
    help=f"If another tool's pre-commit hook must be kept as {CHAINED_NAME} but that name is taken, "
    f"move the old {CHAINED_NAME} aside (timestamped .bak) instead of refusing.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was installed as JSON.")
def install_command(repo: Path | None, force: bool, as_json: bool) -> None:
    """Install the pre-commit hook into this repository's hooks directory.

    The hook is a small sh script that runs `<this python> -m jetpack hook check`, so it works
    without jetpack on PATH. A pre-commit hook already there is kept as pre-commit.local and runs
    first (its failure fails the commit). Installing again only refreshes Jetpack's script.

    \b
    Example:
      jetpack hook install
      jetpack hook install --repo ../other-clone --json
    """
    result = install_hook(repo, force=force)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "action": result.action,
                    "hook": str(result.hook),
                    "hooks_dir": str(result.hooks_dir),
                    "hooks_path_configured": result.hooks_path_configured,
                    "python": result.python,
                    "command": f"{result.python} -m jetpack hook check",
                    "chained": None if result.chained is None else str(result.chained),
                    "chained_executable": result.chained_executable,
                    "moved_existing": result.moved_existing,
                    "backup": None if result.backup is None else str(result.backup),
                },
                indent=2,
            )
        )
        return
    verb = {"installed": "Installed", "updated": "Updated", "unchanged": "Already installed:"}[result.action]
    click.echo(f"{verb} Jetpack's pre-commit hook {result.hook}")
    source = " (from core.hooksPath)" if result.hooks_path_configured else ""
    click.echo(f"  hooks directory: {result.hooks_dir}{source}")
    click.echo(f"  runs:            {result.python} -m jetpack hook check")
    if result.backup is not None:
        click.echo(f"  moved aside:     the old {CHAINED_NAME} is now {result.backup} (no longer run)")
    if result.chained is not None:
        how = "moved there by this install; " if result.moved_existing else ""
        if result.chained_executable:
            click.echo(f"  chains:          {result.chained} ({how}runs first; if it fails, the commit fails)")
        else:
            click.echo(f"  chains:          {result.chained} ({how}not executable, so it does not run — as before)")
    click.echo(
        "Agents commit with JETPACK_AGENT=<their name>; another agent's exclusive reservation blocks the commit "
        "(bypass once: git commit --no-verify; only warn: JETPACK_HOOK_MODE=warn)."
    )


@hook.command("check")
@click.option("--as", "as_name", metavar="NAME", help="Check as this agent (default: $JETPACK_AGENT).")
@click.option(
    "--mode",
    type=click.Choice([m.value for m in hook_check.HookMode], case_sensitive=False),
    help="block (default) or warn (report, never fail); default: $JETPACK_HOOK_MODE.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON on stdout (and nothing else).")
@click.pass_context
def check_command(ctx: click.Context, as_name: str | None, mode: str | None, as_json: bool) -> None:
    """Check the staged paths against other agents' reservations (what the hook runs).

    Exit status: 0 commit allowed (maybe with warnings), 1 blocked by another agent's exclusive
    reservation, 2 the reservations could not be read (fails closed unless JETPACK_HOOK_MODE=warn).

    \b
    Example:
      git add src/api/users.py && JETPACK_AGENT=blue-heron jetpack hook check --json
    """
    environ = dict(os.environ)
    app = ctx.find_object(CliApp)
    if app is not None and app.project is not None:
        environ["JETPACK_PROJECT_DIR"] = str(app.project)
    if app is not None and app.db is not None:
        environ["JETPACK_DB"] = str(app.db)
    report = hook_check.run_check(environ=environ, agent=as_name, mode=mode)
    if as_json:
        click.echo(report.model_dump_json(indent=2))
    else:
        _print_report(report)
    ctx.exit(report.exit_code)


def _say(line: str) -> None:
    click.echo(f"jetpack: {line}", err=True)


def _print_report(report: hook_check.CheckReport) -> None:
    for warning in report.warnings:
        _say(f"warning: {warning}")
    if report.verdict == "error":
        _say(f"commit refused: {report.error}")
        _say(
            f"fix that, or let commits through with warnings only ({hook_check.MODE_VARIABLE}=warn), "
            f"or bypass the check once: {hook_check.BYPASS}"
        )
        return
    if not report.blocked:
        return
    blocked = [verdict for verdict in report.paths if verdict.blocking]
    for verdict in blocked:
        for conflict in verdict.blocking:
            line = hook_check.describe_conflict(
                verdict, conflict, report.checked_at, committer=report.agent, mode=report.mode
            )
            _say(f"blocked: {line}")
    count = f"{len(blocked)} staged path" + ("" if len(blocked) == 1 else "s")
    holders = sorted({c.holder for verdict in blocked for c in verdict.blocking})
    _say(f"commit blocked: {count} reserved exclusively by {', '.join(holders)} (you are committing as {report.agent})")
    _say(f"to commit anyway, bypass the check once: {hook_check.BYPASS}")
