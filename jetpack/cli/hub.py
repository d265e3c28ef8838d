"""``jetpack hub status|restart``: the hubs that serve stdio agents (``jetpack serve --hub``)."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime

import click

from jetpack.cli.app import JetpackGroup, app_of, json_option
from jetpack.cli.output import emit_json, table
from jetpack.hub.address import HubRecord, address_of, hub_address, running_hubs
from jetpack.processes import process_alive


@click.group("hub", cls=JetpackGroup)
def hub() -> None:
    """The hubs that serve stdio agents started with `jetpack serve --hub` (docs/hub.md).

    A hub starts with the first such agent of a project and stops when the last has been gone
    for server.hub_idle_seconds; there is nothing to start by hand.

    \b
    Example:
      jetpack hub status           the hubs of this project: pid, since when, log
      jetpack hub status --all     every hub of this user
      jetpack hub restart          agents move to a fresh hub (e.g. after upgrading Jetpack)
    """


def _project_hubs(ctx: click.Context, everyone: bool) -> list[HubRecord]:
    hubs = running_hubs()
    if everyone:
        return hubs
    settings = app_of(ctx).settings
    return [h for h in hubs if h.database == str(settings.db_location)]


@hub.command("status")
@click.option("--all", "everyone", is_flag=True, help="Every hub of this user, not only this project's.")
@json_option
@click.pass_context
def status(ctx: click.Context, everyone: bool, as_json: bool) -> None:
    """List the running hubs (of this project's database unless --all).

    \b
    Example:
      jetpack hub status --json
    """
    hubs = _project_hubs(ctx, everyone)
    settings = app_of(ctx).settings
    expected = hub_address(settings, dict(os.environ))
    rows = [
        {
            **h.__dict__,
            "started": datetime.fromtimestamp(h.started_at, UTC).isoformat(timespec="seconds"),
            "log": str(address_of(h.key).log),
        }
        for h in hubs
    ]
    if as_json:
        emit_json({"hubs": rows, "this_shell_would_use": expected.key})
        return
    if not rows:
        click.echo("no hub is running" + ("" if everyone else f" for {settings.db_location}"))
        click.echo("An agent started with `jetpack serve --hub` (or JETPACK_HUB=1) starts one.")
        return
    table(
        ["pid", "key", "started", "database", "log"],
        [[r["pid"], r["key"], r["started"], r["database"], r["log"]] for r in rows],
    )


@hub.command("restart")
@click.option("--all", "everyone", is_flag=True, help="Every hub of this user, not only this project's.")
@click.pass_context
def restart(ctx: click.Context, everyone: bool) -> None:
    """Stop the running hubs (of this project unless --all); their agents' relays start a new one
    and hand their sessions over, without the agents' clients noticing. A call a hub was in the
    middle of gets no answer (its client times it out); nothing stored is lost.

    \b
    Example:
      jetpack hub restart
    """
    hubs = _project_hubs(ctx, everyone)
    if not hubs:
        click.echo("no hub is running; nothing to restart")
        return
    for record in hubs:
        os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    waiting = {h.pid for h in hubs}
    while waiting and time.monotonic() < deadline:
        waiting = {pid for pid in waiting if process_alive(pid)}
        time.sleep(0.05)
    if waiting:
        raise click.ClickException(f"hub(s) {sorted(waiting)} did not stop within 30 s; `kill -9` them")
    click.echo(f"stopped {len(hubs)} hub(s); their agents' relays start a new one as they need it")
