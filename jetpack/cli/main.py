"""The ``jetpack`` command."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from jetpack import __version__
from jetpack.cli.app import CliApp, JetpackGroup, app_of, json_option
from jetpack.cli.output import emit_json, table
from jetpack.config import DB_FILE, DEFAULT_CONFIG, STATE_DIR, load_settings

if TYPE_CHECKING:
    from jetpack.server import ServerParts

# Commands that live in their own modules, imported only when used.
_LAZY_COMMANDS = {
    "dashboard": "jetpack.cli.dashboard:dashboard",
    "hook": "jetpack.cli.hook:hook",
    "hub": "jetpack.cli.hub:hub",
    "load": "jetpack.cli.plans:load_command",
    "mail": "jetpack.cli.mail:mail_group",
    "mcp": "jetpack.cli.mcp_config:mcp_group",
    "memory": "jetpack.cli.memory:memory",
    "quality": "jetpack.cli.quality:quality",
    "release": "jetpack.cli.reservations:release_command",
    "reservations": "jetpack.cli.reservations:reservations_command",
    "reserve": "jetpack.cli.reservations:reserve_command",
    "start": "jetpack.cli.start:start",
    "task": "jetpack.cli.tasks:task",
    "token": "jetpack.cli.tokens:token_group",
}


@click.group(cls=JetpackGroup, lazy=_LAZY_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jetpack")
@click.option(
    "--project",
    type=click.Path(file_okay=False, path_type=Path),
    help="Project directory (default: nearest directory holding .jetpack/, like git).",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Database file (default: .jetpack/jetpack.db).",
)
@click.pass_context
def main(ctx: click.Context, project: Path | None, db: Path | None) -> None:
    """Jetpack: a shared task queue, over MCP, for swarms of coding agents.

    \b
    Example:
      jetpack init                     create .jetpack/ with the database and config
      jetpack task add "Write the API" add work (or --from-file plan.json)
      jetpack serve                    the MCP server over stdio (what agents launch)
      jetpack status                   what the swarm is doing

    Register with Claude Code: claude mcp add jetpack -- jetpack serve
    """
    app = CliApp(project=project, db=db)
    ctx.obj = app
    ctx.call_on_close(app.close)


@main.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--prefix", default=None, help="Task id prefix (default: jp).")
@click.pass_context
def init(ctx: click.Context, directory: Path | None, prefix: str | None) -> None:
    """Create .jetpack/ (config.toml and the database) in DIRECTORY (default: here).

    Also adds the database files to the project's .gitignore. Safe to run again.

    \b
    Example:
      jetpack init --prefix api
    """
    explicit = directory or app_of(ctx).project or os.environ.get("JETPACK_PROJECT_DIR")
    root = Path(explicit or Path.cwd()).expanduser().resolve()
    state = root / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    config = state / "config.toml"
    if not config.exists():
        text = (
            DEFAULT_CONFIG if prefix is None else DEFAULT_CONFIG.replace('id_prefix = "jp"', f'id_prefix = "{prefix}"')
        )
        config.write_text(text)
    settings = load_settings({**os.environ, "JETPACK_PROJECT_DIR": str(root)})
    app = CliApp(project=root, db=app_of(ctx).db)
    try:
        version = app.store.schema_version()
    finally:
        app.close()
    ignored = _ignore_database_files(root)
    click.echo(f"Jetpack project ready in {state}")
    click.echo(f"  database: {settings.database} (schema v{version})")
    click.echo(f"  config:   {config}")
    if ignored:
        click.echo(f"  .gitignore: added {', '.join(ignored)}")
    click.echo('\nNext: jetpack task add "First task"   then register the server with your agent:')
    click.echo(f"  claude mcp add jetpack -e JETPACK_PROJECT_DIR={root} -- jetpack serve")


def _ignore_database_files(root: Path) -> list[str]:
    gitignore = root / ".gitignore"
    lines = gitignore.read_text().splitlines() if gitignore.exists() else []
    wanted = [f"{STATE_DIR}/{DB_FILE}{suffix}" for suffix in ("", "-wal", "-shm", "-writer", "-checkpoint")]
    missing = [w for w in wanted if w not in lines]
    if missing:
        prefix = "" if not lines or lines[-1] == "" else "\n"
        with gitignore.open("a") as handle:
            handle.write(prefix + "# Jetpack's database (shared state lives here, not in git)\n")
            handle.write("\n".join(missing) + "\n")
    return missing


@main.command()
@click.option("--agent", help="Agent name for this session (default: $JETPACK_AGENT, else generated).")
@click.option("--skills", help="Comma-separated skills (default: $JETPACK_SKILLS).")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=lambda: os.environ.get("JETPACK_LOG_LEVEL", "warning"),
    show_default="warning",
)
@click.option("--http", "over_http", is_flag=True, help="Serve Streamable HTTP (/mcp) and SSE (/sse) instead of stdio.")
@click.option("--host", help="With --http: address to listen on (default: server.host, 127.0.0.1).")
@click.option("--port", type=int, help="With --http: port (default: server.port, 8765).")
@click.option(
    "--allowed-host", "allowed_hosts", multiple=True, metavar="NAME", help="With --http: a name clients use (repeat)."
)
@click.option(
    "--hub/--no-hub",
    "use_hub",
    default=None,
    help="Stdio: share one server process with this project's other agents (default: $JETPACK_HUB, else "
    "server.hub; see docs/hub.md).",
)
@click.option("--as-hub", "hub_key", hidden=True, help="Run as the hub with this key (relays start it).")
@click.pass_context
def serve(
    ctx: click.Context,
    agent: str | None,
    skills: str | None,
    log_level: str,
    over_http: bool,
    host: str | None,
    port: int | None,
    allowed_hosts: tuple[str, ...],
    use_hub: bool | None,
    hub_key: str | None,
) -> None:
    """Run the MCP server over stdio (agents launch this; logs go to stderr), or with --http
    over Streamable HTTP and SSE for remote agents (see docs/http.md). With --hub, the stdio
    agents of a project share one server process (many agents on one machine: docs/hub.md).

    \b
    Example:
      claude mcp add jetpack -e JETPACK_AGENT=blue-heron -- jetpack serve     Claude Code, stdio
      claude mcp add jetpack -e JETPACK_HUB=1 -- jetpack serve                 the same, via the hub
      jetpack serve --http --host 0.0.0.0 --allowed-host jetpack.example.com  one server, tokens
    """
    environ = dict(os.environ)
    if agent:
        environ["JETPACK_AGENT"] = agent
    if skills is not None:
        environ["JETPACK_SKILLS"] = skills
    app = app_of(ctx)
    if over_http and use_hub:
        raise click.UsageError("--hub is for stdio agents; over HTTP one server already serves every agent")
    if use_hub is None:
        use_hub = _flag("JETPACK_HUB", app.settings.server.hub)
    if use_hub and not over_http and not hub_key:
        if sys.platform == "win32":
            raise click.UsageError(
                "--hub needs unix sockets that carry file descriptors (Linux, macOS); serve without it"
            )
        from jetpack.hub.relay import can_hand_over

        if can_hand_over(0) and can_hand_over(1):
            ctx.exit(_relay_to_hub(app, environ, log_level))
        click.echo("jetpack serve: stdin or stdout is a file, which a hub cannot serve; serving here", err=True)
    from jetpack.lazy import skip_package_init

    # Agents' clients wait for this start: the SDK's package __init__ would also import its client side.
    skip_package_init("mcp")
    import anyio

    from jetpack.memory.backlog import BacklogWorker
    from jetpack.server import IdentityDefaults, build_parts, create_server
    from jetpack.server.app import new_session
    from jetpack.server.stdio import serve_stdio

    logging.basicConfig(level=log_level.upper(), format="jetpack %(levelname)s %(name)s: %(message)s")
    if over_http and agent:
        raise click.UsageError("over HTTP each connection is its own agent: bind a token to a name instead")
    parts = build_parts(app.settings, store=app.store, identity=IdentityDefaults.from_environ(environ))
    # Completed tasks become memory on this thread, not while the agent waits for complete_task.
    backlog = BacklogWorker(parts.memory).start()
    parts.memory.on_outcome = backlog.poke
    try:
        if over_http:
            from jetpack.server.http import serve_http
            from jetpack.server.http_options import HttpOptions

            options = HttpOptions.from_settings(app.settings.server, host=host, port=port, allowed_hosts=allowed_hosts)
            click.echo(options.describe(), err=True)
            serve_http(parts, options, log_level=log_level)
            return
        if hub_key:
            ctx.exit(_run_hub(app, parts, hub_key))
        session = new_session(parts)
        anyio.run(serve_stdio, create_server(parts, session_factory=lambda: session), session)
    finally:
        backlog.stop()


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise click.UsageError(f"{name}={value!r}: use 1 or 0 (true/false, yes/no, on/off)")


def _relay_to_hub(app: CliApp, environ: dict[str, str], log_level: str) -> int:
    """What an agent's ``jetpack serve --hub`` does: relay its stdio to the project's hub."""
    from jetpack.hub.address import hub_address
    from jetpack.hub.relay import relay_stdio

    address = hub_address(app.settings, environ)
    where = [*(["--project", str(app.project)] if app.project else []), *(["--db", str(app.db)] if app.db else [])]
    start = [sys.executable, "-m", "jetpack", *where, "serve", "--as-hub", address.key, "--log-level", log_level]
    return relay_stdio(address, start, environ)


def _run_hub(app: CliApp, parts: ServerParts, key: str) -> int:
    from jetpack.hub.address import hub_address
    from jetpack.hub.server import run_hub
    from jetpack.server import create_server

    address = hub_address(app.settings, os.environ)
    if address.key != key:
        raise click.UsageError(
            f"this hub's settings give key {address.key}, not {key}: its relay sees another configuration"
        )
    return run_hub(parts, create_server(parts), address, app.settings.server.hub_idle_seconds)


@main.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Summarise the queue: tasks by state, agents by state and what they hold, where the database is.

    \b
    Example:
      jetpack status --json
    """
    from jetpack.agents import AgentRegistry
    from jetpack.cli.agents import agent_overview, agents_table, states_summary
    from jetpack.tasks import count_by_state
    from jetpack.tasks.model import compact

    app = app_of(ctx)
    counts = count_by_state(app.queue())
    agents = AgentRegistry(app.store, app.settings.agents).list_agents()
    live = [a for a in agents if a.live]
    overview = agent_overview(app)
    working = [a for a in overview.agents if a.tasks]
    if as_json:
        emit_json(
            {
                "database": app.settings.database,
                "schema_version": app.store.schema_version(),
                "tasks": counts,
                "total": sum(counts.values()),
                "agents": {"live": [a.name for a in live], "known": len(agents)},
                "agent_states": overview.counts,
                "working": [compact(a) for a in working],
            }
        )
        return
    click.echo(f"database: {app.settings.database}")
    click.echo(f"tasks: {sum(counts.values())} total")
    table(["state", "count"], [(state, n) for state, n in counts.items() if n])
    click.echo(
        f"agents: {len(live)} live ({', '.join(a.name for a in live) or 'none'}), {len(agents)} known"
        + (f" ({states_summary(overview.counts)})" if agents else "")
    )
    if working:
        agents_table(working, details=False)


@main.command()
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(["active", "idle", "stale", "dead"]),
    help="Only agents in these states (repeatable).",
)
@json_option
@click.pass_context
def agents(ctx: click.Context, states: tuple[str, ...], as_json: bool) -> None:
    """List the agents that have used this project: state (active, idle, stale, dead), heartbeat age
    and the tasks each holds; active ones first.

    \b
    Examples:
      jetpack agents
      jetpack agents --state dead --json
    """
    from jetpack.agents import AgentRegistry
    from jetpack.agents.health import STATE_ORDER
    from jetpack.cli.agents import agent_overview, agents_table
    from jetpack.tasks.model import compact

    app = app_of(ctx)
    records = {r.name: r for r in AgentRegistry(app.store, app.settings.agents).list_agents()}
    shown = [a for a in agent_overview(app).agents if a.name in records and (not states or a.state.value in states)]
    shown.sort(key=lambda a: (STATE_ORDER[a.state], a.heartbeat_age_seconds, a.name))
    if as_json:
        emit_json(
            [
                {
                    **compact(records[a.name].model_copy(update={"session_id": records[a.name].session_id[:8]})),
                    **compact(a),
                }
                for a in shown
            ]
        )
        return
    if not shown:
        click.echo("no agents yet" if not states else f"no {' or '.join(states)} agents")
        return
    agents_table(shown)


@main.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
def demo(directory: Path | None) -> None:
    """Run a demo swarm: 4 script workers build a sample plan in a fresh git repository, live.

    DIRECTORY must be new or empty (default: a temporary directory).

    \b
    Example:
      jetpack demo /tmp/jetpack-demo
    """
    from jetpack.cli.demo import run_demo

    run_demo(directory)
