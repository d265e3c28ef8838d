"""``jetpack reserve``, ``jetpack release``, ``jetpack reservations``: advisory file reservations."""

from __future__ import annotations

import click

from jetpack.cli.app import app_of, as_option, cli_actor, json_option
from jetpack.cli.output import emit_json, table
from jetpack.reservations import service


@click.command("reserve")
@click.argument("paths", nargs=-1, required=True)
@click.option("--exclusive", is_flag=True, help="Record only if nothing conflicts; blocks others' commits.")
@click.option("--shared", is_flag=True, help="Observe-only: never conflicts with other shared reservations.")
@click.option("--ttl", "ttl_seconds", type=int, help="Seconds (default from config, 3600).")
@click.option("--reason", help="Why (shown to others in conflicts).")
@click.option("--task", "task_id", help="The task these files are for.")
@as_option
@json_option
@click.pass_context
def reserve_command(
    ctx: click.Context,
    paths: tuple[str, ...],
    exclusive: bool,
    shared: bool,
    ttl_seconds: int | None,
    reason: str | None,
    task_id: str | None,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Reserve files or globs ('*' one directory level, '**' any depth). Conflicts are reported, not errors.

    \b
    Example:
      jetpack reserve 'src/api/**' --as blue-heron --reason "refactor handlers" --ttl 1800
    """
    app = app_of(ctx)
    mode = service.ReserveMode.EXCLUSIVE if exclusive else service.ReserveMode.ADVISORY
    result = service.reserve_files(
        app.reservations(),
        cli_actor(app, as_name).name,
        list(paths),
        mode=mode,
        shared=shared,
        ttl_seconds=ttl_seconds,
        reason=reason,
        task_id=task_id,
    )
    if as_json:
        emit_json(result)
        return
    if result.recorded:
        for r in result.reservations:
            click.echo(
                f"reserved #{r.id} {r.pattern} until {r.expires_at:%H:%M:%SZ}" + (" (exclusive)" if r.exclusive else "")
            )
    else:
        click.echo("not reserved: exclusive reservations need no conflicts")
    _print_conflicts(result.conflicts)
    if not result.recorded:
        ctx.exit(3)


@click.command("release")
@click.argument("paths", nargs=-1)
@click.option("--id", "ids", type=int, multiple=True, help="Reservation id (repeatable).")
@click.option("--all", "everything", is_flag=True, help="Release all your reservations.")
@as_option
@json_option
@click.pass_context
def release_command(
    ctx: click.Context,
    paths: tuple[str, ...],
    ids: tuple[int, ...],
    everything: bool,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Release your reservations by pattern, by id, or all.

    \b
    Example:
      jetpack release 'src/api/**' --as blue-heron
    """
    app = app_of(ctx)
    released = service.release_files(
        app.reservations(),
        cli_actor(app, as_name).name,
        ids=list(ids) or None,
        paths=list(paths) or None,
        everything=everything,
    )
    if as_json:
        emit_json({"released": [r.model_dump(mode="json") for r in released]})
        return
    click.echo(
        f"released {len(released)} reservation(s)" + (": " + ", ".join(r.pattern for r in released) if released else "")
    )


@click.command("reservations")
@click.option("--agent", help="Only this agent's reservations.")
@click.option("--check", "check_paths", multiple=True, help="Instead, list who holds something overlapping PATH.")
@as_option
@json_option
@click.pass_context
def reservations_command(
    ctx: click.Context, agent: str | None, check_paths: tuple[str, ...], as_name: str | None, as_json: bool
) -> None:
    """List active reservations, or check paths against them.

    \b
    Example:
      jetpack reservations --check src/api/handlers.py --json
    """
    app = app_of(ctx)
    if check_paths:
        conflicts = service.check_files(app.reservations(), cli_actor(app, as_name).name, list(check_paths))
        if as_json:
            emit_json({"conflicts": [c.model_dump(mode="json") for c in conflicts]})
            return
        if not conflicts:
            click.echo("no one else holds these paths")
        _print_conflicts(conflicts)
        return
    active = service.active_reservations(app.reservations(), agent)
    if as_json:
        emit_json({"reservations": [r.model_dump(mode="json") for r in active]})
        return
    if not active:
        click.echo("no active reservations")
        return
    table(
        ["id", "agent", "pattern", "mode", "until", "task", "reason"],
        [
            (
                r.id,
                r.agent,
                r.pattern,
                "exclusive" if r.exclusive else "shared" if r.shared else "advisory",
                f"{r.expires_at:%H:%M:%SZ}",
                r.task_id or "",
                r.reason or "",
            )
            for r in active
        ],
    )


def _print_conflicts(conflicts: list[service.ConflictView]) -> None:
    for c in conflicts:
        kind = "exclusive" if c.exclusive else "shared" if c.shared else "advisory"
        click.echo(
            f"conflict: {c.path} overlaps {c.holder}'s {kind} {c.pattern} until {c.expires_at:%H:%M:%SZ}"
            + (f" (task {c.task_id})" if c.task_id else "")
        )
