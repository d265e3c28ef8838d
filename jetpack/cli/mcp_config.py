"""``jetpack mcp config``: the snippet that registers Jetpack with an agent's MCP client, or writes it."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from jetpack.agents import check_agent_name, parse_skills
from jetpack.cli.app import CliApp, JetpackGroup
from jetpack.config import STATE_DIR, find_project_dir
from jetpack.errors import InvalidInput
from jetpack.mcp_clients import (
    CLIENTS,
    DEFAULT_SERVER_NAME,
    TOKEN_REFUSAL,
    TOKEN_VARIABLE,
    Client,
    ServerSpec,
    Transport,
    check_server_name,
    check_server_url,
    codex_add_command,
    merge_json_entry,
    refuse_secrets,
    toml_entry_status,
)

EXAMPLE_URL = "http://127.0.0.1:8765/mcp"


@click.group("mcp", cls=JetpackGroup)
def mcp_group() -> None:
    """Register Jetpack with your agents' MCP clients (Claude Code, Codex, Cursor, Gemini CLI).

    \b
    Example:
      jetpack mcp config --client claude --write      stdio entry merged into .mcp.json
      jetpack mcp config --client codex               TOML for ~/.codex/config.toml
    """


@mcp_group.command("config")
@click.option(
    "--client",
    "client_key",
    required=True,
    type=click.Choice(list(CLIENTS)),
    help="The MCP client to configure.",
)
@click.option(
    "--http",
    "url",
    metavar="URL",
    help=f"Reach a running `jetpack serve --http` at URL (e.g. {EXAMPLE_URL}; a URL ending in /sse uses SSE) "
    f"instead of launching `jetpack serve` over stdio. The client sends the token from ${TOKEN_VARIABLE}.",
)
@click.option("--agent", metavar="NAME", help="stdio: the agent name (JETPACK_AGENT) the server runs as.")
@click.option("--skills", metavar="LIST", help="stdio: comma-separated skills (JETPACK_SKILLS).")
@click.option(
    "--hub", is_flag=True, help="stdio: share one hub process with the project's other agents (JETPACK_HUB=1)."
)
@click.option(
    "--name",
    default=DEFAULT_SERVER_NAME,
    show_default=True,
    help="The server's key in the client's config (tools show up as <name>'s tools).",
)
@click.option(
    "--command",
    "command",
    metavar="CMD",
    help="stdio: what the client runs (default: `jetpack` when the jetpack on PATH is this one, "
    "else this jetpack's absolute path). 'uv run jetpack' style values are split into command and args.",
)
@click.option(
    "--write",
    is_flag=True,
    help="Merge the entry into the client's project file (.mcp.json, .cursor/mcp.json, .gemini/settings.json), "
    "keeping everything else; for Codex, say where to put it (Jetpack never writes in your home directory).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report: the config, its text, what --write did.")
@click.option("--token", hidden=True, help="Refused: tokens are never written into a config.")
@click.pass_context
def config_command(
    ctx: click.Context,
    client_key: str,
    url: str | None,
    agent: str | None,
    skills: str | None,
    hub: bool,
    name: str,
    command: str | None,
    write: bool,
    as_json: bool,
    token: str | None,
) -> None:
    """Print Jetpack's entry for an MCP client's config, in that client's format; --write merges it into its file.

    stdio (default): the client launches `jetpack serve` in the project. --http URL: the client connects to a
    shared `jetpack serve --http` and authenticates with the bearer token in $JETPACK_TOKEN, which is never
    written anywhere (create one with `jetpack token create --agent NAME`).

    \b
    Example:
      jetpack mcp config --client claude --skills python,sql --write
      jetpack mcp config --client claude --hub --write   many agents here: they share one hub
      jetpack mcp config --client cursor --http http://127.0.0.1:8765/mcp --write
      jetpack mcp config --client gemini --http http://127.0.0.1:8765/sse
      jetpack mcp config --client codex --agent blue-heron --write   (says where it goes)
    """
    if token is not None:
        raise InvalidInput(f"--token is not accepted. {TOKEN_REFUSAL}")
    refuse_secrets(agent=agent, skills=skills, name=name)
    client = CLIENTS[client_key]
    project = _project_dir(ctx)
    notes: list[str] = []
    spec = _server_spec(client, project, url, agent, skills, name, command, notes, hub=hub)
    document = client.document(spec)
    text = client.render(document)
    file = project / client.config_file if client.project_file else _codex_config_path()
    report = Report(client=client, spec=spec, document=document, text=text, file=file, notes=notes)
    if write and client.project_file:
        _write_project_file(report, report.file)
    elif write:
        _check_codex_file(report, report.file)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2, ensure_ascii=False))
        return
    for note in notes:
        click.echo(f"note: {note}", err=True)
    if write:
        click.echo(report.written)
    else:
        click.echo(text, nl=False)
        click.echo(_where_it_goes(client, spec), err=True)
    if spec.transport is not Transport.STDIO:
        click.echo(_token_hint(), err=True)


@dataclass
class Report:
    client: Client
    spec: ServerSpec
    document: dict[str, Any]
    text: str
    file: Path
    notes: list[str]
    action: str | None = None  # created, added, updated, unchanged; for Codex: not written
    changes: list[str] = field(default_factory=list)
    written: str = ""  # what --write did, for people

    def as_json(self) -> dict[str, Any]:
        return {
            "client": self.client.key,
            "transport": self.spec.transport.value,
            "server": self.spec.name,
            "format": self.client.format,
            "file": str(self.file),
            "config": self.document,
            "text": self.text,
            "action": self.action,
            "changes": self.changes,
            "notes": self.notes,
        }


def _server_spec(
    client: Client,
    project: Path,
    url: str | None,
    agent: str | None,
    skills: str | None,
    name: str,
    command: str | None,
    notes: list[str],
    *,
    hub: bool = False,
) -> ServerSpec:
    name = check_server_name(name)
    if url is not None:
        given = (("agent", agent), ("skills", skills), ("command", command), ("hub", hub))
        stdio_only = [f"--{o}" for o, v in given if v]
        if stdio_only:
            raise InvalidInput(
                f"{', '.join(stdio_only)} configure a server the client launches (stdio); over --http the token names "
                "the agent (jetpack token create --agent NAME) and the agent sets its skills with register_agent"
            )
        checked = check_server_url(url)
        if checked.completed:
            notes.append(f"{url} has no path; using {checked.url}, where `jetpack serve --http` serves MCP")
        return ServerSpec(name=name, url=checked.url)
    executable, prefix, note = _launcher(command)
    if note:
        shared = f" ({client.config_file} is usually committed: this path works only on this machine)"
        notes.append(note + (shared if client.project_file else ""))
    if not (project / STATE_DIR).is_dir():
        notes.append(f"no {STATE_DIR}/ in {project} yet: run `jetpack init` there before the client starts the server")
    return ServerSpec(
        name=name,
        command=executable,
        args=(*prefix, "serve"),
        agent=check_agent_name(agent) if agent else None,
        skills=",".join(parse_skills(skills)) or None,
        project_dir=project,
        hub=hub,
    )


def _project_dir(ctx: click.Context) -> Path:
    """The project like every other command finds it (--project, $JETPACK_PROJECT_DIR, nearest .jetpack/)."""
    environ = dict(os.environ)
    app = ctx.find_object(CliApp)
    if app is not None and app.project is not None:
        environ["JETPACK_PROJECT_DIR"] = str(app.project)
    return find_project_dir(environ, Path.cwd())


def _launcher(command: str | None) -> tuple[str, tuple[str, ...], str | None]:
    """The executable the client runs, leading arguments, and a note when that is not plain `jetpack`.

    Plain `jetpack` keeps a committed file portable; an absolute path is used only when the `jetpack`
    on PATH is missing or another installation, because then `jetpack` would not start this one.
    """
    if command:
        if Path(command).exists() or not any(c.isspace() for c in command):
            return command, (), None
        first, *rest = shlex.split(command)
        return first, tuple(rest), None
    running = _running_jetpack()
    if running is None:
        return (
            sys.executable,
            ("-m", "jetpack"),
            f"no jetpack executable next to {sys.executable}; the client runs `{sys.executable} -m jetpack`",
        )
    on_path = shutil.which("jetpack")
    if on_path is not None and os.path.samefile(on_path, running):
        return "jetpack", (), None
    why = f"the jetpack on PATH is {on_path}, another installation" if on_path else "jetpack is not on PATH"
    return str(running), (), f"{why}; the client runs {running} (pass --command jetpack to use PATH)"


def _running_jetpack() -> Path | None:
    script = Path(sys.argv[0])
    if script.stem == "jetpack" and script.is_file():
        return script.absolute()
    beside = Path(sys.executable).parent / ("jetpack.exe" if os.name == "nt" else "jetpack")
    return beside.absolute() if beside.is_file() else None


# --- --write ---------------------------------------------------------------------------------------------


def _write_project_file(report: Report, file: Path) -> None:
    path = file.resolve()  # write through a symlinked config, never replace the link
    if path.is_dir():
        raise InvalidInput(f"{path} is a directory; nothing was written")
    try:
        existing = path.read_text(encoding="utf-8") if path.exists() else None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"cannot read {path} ({error}); nothing was written") from error
    merge = merge_json_entry(existing, str(path), report.document)
    if merge.action != "unchanged":
        _replace_file(path, merge.text)
    report.action, report.changes = merge.action, merge.changes
    entry = f"{report.client.servers_key}.{report.spec.name}"
    report.written = {
        "created": f"Created {path} with {entry} ({_describe(report.spec)})",
        "added": f"Added {entry} ({_describe(report.spec)}) to {path}",
        "updated": f"Updated {entry} in {path}:\n" + "\n".join(f"  {c}" for c in merge.changes),
        "unchanged": f"{path} already has this {entry} entry; nothing changed",
    }[merge.action]


def _replace_file(path: Path, text: str) -> None:
    """Readers never see half a file, and a failed write leaves the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.jetpack-{os.getpid()}")
    try:
        temporary.write_text(text, encoding="utf-8")
        if path.exists():
            shutil.copymode(path, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _codex_config_path() -> Path:
    return Path(os.environ.get("CODEX_HOME") or "~/.codex").expanduser() / "config.toml"


def _check_codex_file(report: Report, path: Path) -> None:
    """Codex's config is personal and shared by every project: say what to do, never edit it."""
    try:
        existing = path.read_text(encoding="utf-8") if path.is_file() else None
    except (OSError, UnicodeDecodeError):
        existing = None
    status = toml_entry_status(existing, report.document)
    table = f"[mcp_servers.{report.spec.name}]"
    add = shlex.join(codex_add_command(report.spec))
    report.action = "not written"
    report.changes = [f"{path}: {status}"]
    report.written = {
        "same": f"{path} already has this {table} entry; nothing to do.",
        "absent": f"Jetpack does not edit files in your home directory. Add this to {path}:\n\n{report.text}\n"
        f"or let Codex add it:\n  {add}",
        "different": f"{path} has a different {table}; replace it with:\n\n{report.text}\n"
        f"or: codex mcp remove {report.spec.name} && {add}",
        "invalid": f"{path} is not valid TOML (Codex cannot read it either); fix it, then add:\n\n{report.text}",
    }[status]


# --- messages --------------------------------------------------------------------------------------------


def _describe(spec: ServerSpec) -> str:
    if spec.url is not None:
        return f"{spec.transport.value} {spec.url}"
    return "stdio: " + shlex.join([spec.command, *spec.args])


def _where_it_goes(client: Client, spec: ServerSpec) -> str:
    if client.project_file:
        return f"# {client.title}: merge into {client.config_file} in the project, or run again with --write"
    return f"# {client.title}: add to ~/.codex/config.toml, or run: {shlex.join(codex_add_command(spec))}"


def _token_hint() -> str:
    return (
        f"# The client sends the bearer token from ${TOKEN_VARIABLE}: create one with "
        f"`jetpack token create --agent NAME` and export {TOKEN_VARIABLE} where the client starts."
    )
