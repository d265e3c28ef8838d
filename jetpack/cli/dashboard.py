"""``jetpack dashboard``: the web dashboard alone, without an MCP endpoint."""

from __future__ import annotations

import logging
import os

import click

from jetpack.cli.app import app_of

DEFAULT_PORT = 8766


@click.command()
@click.option("--host", help="Address to listen on (default: server.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True, help="Port.")
@click.option(
    "--allowed-host", "allowed_hosts", multiple=True, metavar="NAME", help="A name the page is reached by (repeat)."
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=lambda: os.environ.get("JETPACK_LOG_LEVEL", "warning"),
    show_default="warning",
)
@click.pass_context
def dashboard(ctx: click.Context, host: str | None, port: int, allowed_hosts: tuple[str, ...], log_level: str) -> None:
    """Serve the live dashboard (board, graph, agents, mail, reservations, memory, quality,
    metrics) without an MCP endpoint. `jetpack serve --http` serves the same dashboard at /.

    On loopback no token is needed. Bound beyond it, the page asks for a bearer token
    (`jetpack token create --agent NAME`) before it shows data or changes anything.

    \b
    Examples:
      jetpack dashboard                      then open http://127.0.0.1:8766/
      jetpack dashboard --port 9000 --host 0.0.0.0 --allowed-host board.example.com
    """
    from jetpack.dashboard.app import build_dashboard_app
    from jetpack.server import build_parts
    from jetpack.server.http import serve_http
    from jetpack.server.http_options import HttpOptions

    logging.basicConfig(level=log_level.upper(), format="jetpack %(levelname)s %(name)s: %(message)s")
    app = app_of(ctx)
    parts = build_parts(app.settings, store=app.store)
    options = HttpOptions.from_settings(app.settings.server, host=host, port=port, allowed_hosts=allowed_hosts)
    shown = f"[{options.host}]" if ":" in options.host else options.host
    why = options.token_required_because
    click.echo(
        f"jetpack dashboard on http://{shown}:{options.port}/ "
        + (f"(bearer tokens required: {why})" if why else "(loopback: no token needed)"),
        err=True,
    )
    serve_http(parts, options, log_level=log_level, build=build_dashboard_app)
