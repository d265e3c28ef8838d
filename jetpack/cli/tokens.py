"""``jetpack token create|list|revoke``: bearer tokens for the HTTP transports."""

from __future__ import annotations

import getpass
import os

import click

from jetpack.auth import TokenRecord, TokenRegistry
from jetpack.cli.app import JetpackGroup, app_of, json_option
from jetpack.cli.output import emit_json, table


@click.group("token", cls=JetpackGroup)
def token_group() -> None:
    """Bearer tokens for `jetpack serve --http` (see docs/http.md).

    Only a hash of each token is stored: its secret is printed once, by `create`. A token bound
    to an agent (--agent) can act only as that agent.

    \b
    Example:
      jetpack token create --agent blue-heron --name laptop
      jetpack token list
      jetpack token revoke 3
    """


def _registry(ctx: click.Context) -> TokenRegistry:
    return TokenRegistry(app_of(ctx).store)


def _operator() -> str:
    return os.environ.get("JETPACK_AGENT") or f"cli-{getpass.getuser()}"


@token_group.command("create")
@click.option("--agent", metavar="NAME", help="Bind the token to this agent: it can act as no other.")
@click.option("--name", "label", default="", metavar="LABEL", help="A label to recognise the token by.")
@click.option("--json", "as_json", is_flag=True, help="Print the token and its record as JSON.")
@click.pass_context
def create_command(ctx: click.Context, agent: str | None, label: str, as_json: bool) -> None:
    """Create a token and print it (once: only its hash is kept).

    The token alone goes to stdout, the instructions to stderr, so
    `export JETPACK_TOKEN=$(jetpack token create --agent NAME)` keeps just the token.

    \b
    Example:
      jetpack token create --agent blue-heron --name "ci runner"
    """
    created = _registry(ctx).create(created_by=_operator(), agent=agent, name=label)
    record = created.record
    if as_json:
        emit_json({"token": created.secret, **record.model_dump(mode="json")})
        return
    bound = (
        f"bound to agent {record.agent}"
        if record.agent
        else "not bound to an agent (it may take any name no token is bound to)"
    )
    click.echo(f"Created token {record.id} ({record.prefix}…), {bound}. It is shown only now:", err=True)
    click.echo(created.secret)
    click.echo(
        "\nClients send it as the header 'Authorization: Bearer <token>'. Keep it in $JETPACK_TOKEN on the "
        "agent's machine, then register the server there, e.g.:\n"
        "  jetpack mcp config --client claude --http http://HOST:8765/mcp --write\n"
        f"Revoke it with: jetpack token revoke {record.id}",
        err=True,
    )


@token_group.command("list")
@click.option("--active", is_flag=True, help="Only tokens that have not been revoked.")
@json_option
@click.pass_context
def list_command(ctx: click.Context, active: bool, as_json: bool) -> None:
    """List tokens (never their secrets): id, prefix, label, agent, use and revocation.

    \b
    Example:
      jetpack token list --json
    """
    records = _registry(ctx).list_tokens(include_revoked=not active)
    if as_json:
        emit_json([r.model_dump(mode="json") for r in records])
        return
    if not records:
        click.echo("no tokens yet; create one with `jetpack token create --agent NAME`")
        return
    table(
        ["id", "prefix", "name", "agent", "created", "last used", "state"],
        [
            (
                r.id,
                f"{r.prefix}…",
                r.name,
                r.agent or "(any)",
                f"{r.created_at:%Y-%m-%d %H:%M}",
                f"{r.last_used_at:%Y-%m-%d %H:%M}" if r.last_used_at else "never",
                _state(r),
            )
            for r in records
        ],
    )


def _state(record: TokenRecord) -> str:
    return "active" if record.revoked_at is None else f"revoked {record.revoked_at:%Y-%m-%d %H:%M}"


@token_group.command("revoke")
@click.argument("reference", metavar="ID_OR_PREFIX")
@click.pass_context
def revoke_command(ctx: click.Context, reference: str) -> None:
    """Revoke a token (by id or prefix): from the next request on, it is refused.

    \b
    Example:
      jetpack token revoke 3
      jetpack token revoke jpt_Xc91aQ2k
    """
    record = _registry(ctx).revoke(reference, revoked_by=_operator())
    agent = f", agent {record.agent}" if record.agent else ""
    click.echo(f"revoked token {record.id} ({record.prefix}…{agent}); requests with it are refused from now on")
