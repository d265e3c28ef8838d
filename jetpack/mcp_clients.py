"""What each MCP client needs in its config file to launch or reach Jetpack.

One entry per client (Claude Code, Codex, Cursor, Gemini CLI), built from a ``ServerSpec``, rendered
as the client's own format (JSON or TOML), and merged into an existing JSON file without touching
anything else in it. A bearer token never appears in an entry: each client reads it from
``$JETPACK_TOKEN`` in its own way.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from jetpack.errors import InvalidInput

TOKEN_VARIABLE = "JETPACK_TOKEN"
DEFAULT_SERVER_NAME = "jetpack"
DEFAULT_HTTP_PATH = "/mcp"

TOKEN_REFUSAL = (
    "Jetpack never writes a token into a client's config. Export it in the environment the client starts "
    f"from instead (export {TOKEN_VARIABLE}=…, a token from `jetpack token create --agent NAME`); "
    f"the snippet reads it from ${TOKEN_VARIABLE}"
)


class Transport(StrEnum):
    STDIO = "stdio"
    HTTP = "http"  # Streamable HTTP, served at /mcp
    SSE = "sse"  # the older HTTP+SSE transport, served at /sse


@dataclass(frozen=True)
class ServerSpec:
    """How a client should run or reach Jetpack, independent of any client's format."""

    name: str = DEFAULT_SERVER_NAME
    command: str = "jetpack"
    args: tuple[str, ...] = ("serve",)
    agent: str | None = None
    skills: str | None = None
    url: str | None = None
    project_dir: Path | None = None  # only for clients that need an absolute path (Codex)
    hub: bool = False  # the agents' servers share one hub (JETPACK_HUB=1, docs/hub.md)

    @property
    def transport(self) -> Transport:
        if self.url is None:
            return Transport.STDIO
        return Transport.SSE if urlsplit(self.url).path.rstrip("/").endswith("/sse") else Transport.HTTP

    def jetpack_env(self, project_dir: str | None) -> dict[str, str]:
        env = {"JETPACK_PROJECT_DIR": project_dir} if project_dir else {}
        if self.agent:
            env["JETPACK_AGENT"] = self.agent
        if self.skills:
            env["JETPACK_SKILLS"] = self.skills
        if self.hub:
            env["JETPACK_HUB"] = "1"
        return env


TRANSPORT_NAMES = {Transport.STDIO: "stdio", Transport.HTTP: "Streamable HTTP", Transport.SSE: "HTTP+SSE"}

Format = Literal["json", "toml"]


@dataclass(frozen=True)
class Client:
    key: str
    title: str
    config_file: str  # project-relative for project files, else as the client documents it
    format: Format
    project_file: bool  # False: a file in the user's home directory, which Jetpack never writes
    transports: frozenset[Transport]
    entry: Callable[[ServerSpec], dict[str, Any]] = field(repr=False)

    @property
    def servers_key(self) -> str:
        return "mcp_servers" if self.format == "toml" else "mcpServers"

    def document(self, spec: ServerSpec) -> dict[str, Any]:
        """The smallest config file holding this server: what `jetpack mcp config` prints."""
        if spec.transport not in self.transports:
            supported = " and ".join(TRANSPORT_NAMES[t] for t in Transport if t in self.transports)
            raise InvalidInput(
                f"{self.title} connects over {supported}, not {TRANSPORT_NAMES[spec.transport]}; "
                f"use the server's {DEFAULT_HTTP_PATH} URL"
            )
        return {self.servers_key: {spec.name: self.entry(spec)}}

    def render(self, document: Mapping[str, Any]) -> str:
        return render_toml(document) if self.format == "toml" else render_json(document)


def _stdio(spec: ServerSpec) -> dict[str, Any]:
    return {"command": spec.command, "args": list(spec.args)}


def _bearer(token_reference: str) -> dict[str, Any]:
    """The Authorization header, with the token as the client's reference to $JETPACK_TOKEN."""
    return {"headers": {"Authorization": f"Bearer {token_reference}"}}


def _claude_entry(spec: ServerSpec) -> dict[str, Any]:
    # Claude Code expands ${VAR} and ${VAR:-default} in .mcp.json; it starts servers in the project.
    if spec.url is not None:
        return {"type": spec.transport.value, "url": spec.url, **_bearer("${" + TOKEN_VARIABLE + "}")}
    return {"type": "stdio", **_stdio(spec), "env": spec.jetpack_env("${CLAUDE_PROJECT_DIR:-.}")}


def _cursor_entry(spec: ServerSpec) -> dict[str, Any]:
    # Cursor interpolates ${env:NAME} and ${workspaceFolder}; it tells HTTP from SSE by itself.
    if spec.url is not None:
        return {"url": spec.url, **_bearer("${env:" + TOKEN_VARIABLE + "}")}
    return {**_stdio(spec), "env": spec.jetpack_env("${workspaceFolder}")}


def _gemini_entry(spec: ServerSpec) -> dict[str, Any]:
    # Gemini CLI expands $VAR and ${VAR} in settings.json; "httpUrl" is Streamable HTTP, "url" is SSE.
    # Its stdio servers start in the directory gemini runs in, where Jetpack finds .jetpack/ itself.
    if spec.url is not None:
        key = "url" if spec.transport is Transport.SSE else "httpUrl"
        return {key: spec.url, **_bearer("${" + TOKEN_VARIABLE + "}")}
    env = spec.jetpack_env(None)
    return {**_stdio(spec), **({"env": env} if env else {})}


def _codex_entry(spec: ServerSpec) -> dict[str, Any]:
    # Codex clears its MCP servers' environment and reads one config for every project, so the
    # project is an absolute path, and JETPACK_AGENT may come from the shell that started codex.
    if spec.url is not None:
        return {"url": spec.url, "bearer_token_env_var": TOKEN_VARIABLE}
    project = str(spec.project_dir) if spec.project_dir is not None else None
    entry: dict[str, Any] = {**_stdio(spec), "env": spec.jetpack_env(project)}
    if not spec.agent:
        entry["env_vars"] = ["JETPACK_AGENT"]
    entry["startup_timeout_sec"] = 20
    return entry


_ALL = frozenset(Transport)

CLIENTS: dict[str, Client] = {
    client.key: client
    for client in (
        Client("claude", "Claude Code", ".mcp.json", "json", True, _ALL, _claude_entry),
        Client("codex", "Codex", "~/.codex/config.toml", "toml", False, _ALL - {Transport.SSE}, _codex_entry),
        Client("cursor", "Cursor", ".cursor/mcp.json", "json", True, _ALL, _cursor_entry),
        Client("gemini", "Gemini CLI", ".gemini/settings.json", "json", True, _ALL, _gemini_entry),
    )
}


# --- checking what the user passed -------------------------------------------------------------------

_SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_LONG_RUN = re.compile(r"[A-Za-z0-9_\-+=~.]{32,}")
_LONG_SEGMENT = re.compile(r"[A-Za-z0-9]{20,}")
_JWT = re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}")
_JETPACK_TOKEN = re.compile(r"\bjpt_[\w-]{8,}")  # jetpack/auth/tokens.py: "jpt_" + 43 URL-safe characters
_SECRET_PARAMETERS = {"token", "access_token", "api_key", "apikey", "key", "auth", "authorization", "secret"}


def looks_like_secret(value: str) -> bool:
    """A safety net, not a detector: refuse values shaped like bearer tokens, API keys or JWTs."""
    text = value.strip()
    if text.lower().startswith("bearer ") or _JWT.search(text) or _JETPACK_TOKEN.search(text):
        return True
    runs = [*_LONG_RUN.findall(text), *_LONG_SEGMENT.findall(text)]
    return any(re.search(r"[A-Za-z]", run) and re.search(r"\d", run) for run in runs)


def refuse_secrets(**values: str | None) -> None:
    for option, value in values.items():
        if value and looks_like_secret(value):
            raise InvalidInput(f"--{option} looks like a secret token. {TOKEN_REFUSAL}")


def check_server_name(name: str) -> str:
    if not _SERVER_NAME.match(name):
        raise InvalidInput(
            f"server name {name[:80]!r} must be 1-64 letters, digits, '-' or '_', starting with a letter or digit "
            "(e.g. 'jetpack' or 'jetpack-remote')"
        )
    return name


@dataclass(frozen=True)
class CheckedUrl:
    url: str
    completed: bool  # True when DEFAULT_HTTP_PATH was added to a URL that had no path


def check_server_url(url: str) -> CheckedUrl:
    """The URL of `jetpack serve --http`: http(s), a host, no credentials anywhere in it."""
    parts = urlsplit(url.strip())
    example = f"e.g. http://127.0.0.1:8765{DEFAULT_HTTP_PATH}"
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvalidInput(f"--http takes the server's http:// or https:// URL ({example}), not {url[:80]!r}")
    if parts.username or parts.password:
        raise InvalidInput(f"--http must not carry credentials (user:password@). {TOKEN_REFUSAL}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    secret_keys = any(key.lower() in _SECRET_PARAMETERS for key, _ in query)
    if secret_keys or any(looks_like_secret(part) for part in (parts.path, parts.fragment, *(v for _, v in query))):
        raise InvalidInput(f"--http looks like it carries a secret token. {TOKEN_REFUSAL}")
    if parts.path in {"", "/"}:
        return CheckedUrl(urlunsplit(parts._replace(path=DEFAULT_HTTP_PATH)), completed=True)
    return CheckedUrl(urlunsplit(parts), completed=False)


# --- rendering -----------------------------------------------------------------------------------------


def render_json(document: Mapping[str, Any], indent: str | int = 2) -> str:
    return json.dumps(document, indent=indent, ensure_ascii=False) + "\n"


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A TOML basic string has JSON's escapes, except that it has no \/ and needs no \u for non-ASCII.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def render_toml(document: Mapping[str, Any]) -> str:
    """Codex's shape of TOML: ``[mcp_servers.NAME]`` tables holding scalars, arrays and inline tables.

    Mappings down to the server entry are ``[tables]``; deeper ones (``env``) are inline tables on
    their key's line. Written here rather than adding a TOML-writing dependency; tests check it
    against tomllib.
    """
    blocks: list[str] = []

    def table(path: list[str], mapping: Mapping[str, Any]) -> None:
        nested = len(path) < _TABLE_DEPTH
        lines = [
            f"{_toml_key(k)} = {_toml_value(v)}" for k, v in mapping.items() if not (nested and isinstance(v, Mapping))
        ]
        if path and (lines or not mapping):
            lines.insert(0, f"[{'.'.join(_toml_key(p) for p in path)}]")
        if lines:
            blocks.append("\n".join(lines))
        for key, value in mapping.items():
            if nested and isinstance(value, Mapping):
                table([*path, key], value)

    table([], document)
    return "\n\n".join(blocks) + "\n"


_TABLE_DEPTH = 2  # mcp_servers, mcp_servers.NAME


# --- merging into a client's file ----------------------------------------------------------------------


@dataclass(frozen=True)
class Merge:
    action: Literal["created", "added", "updated", "unchanged"]
    text: str  # the file's content afterwards (the old content when unchanged)
    changes: list[str]


def merge_json_entry(existing: str | None, where: str, document: Mapping[str, Any]) -> Merge:
    """Put the one server of ``document`` into a JSON config file's text, keeping everything else.

    ``existing`` is None when the file does not exist. Refuses (InvalidInput) rather than guess when
    the file is not a JSON object, so a file the user must fix is never overwritten.
    """
    ((servers_key, servers),) = document.items()
    ((name, entry),) = servers.items()
    path = f"{servers_key}.{name}"
    if existing is None or not existing.strip():
        return Merge("created" if existing is None else "added", render_json(document), [f"{path}: added"])
    try:
        data = json.loads(existing)
    except json.JSONDecodeError as error:
        raise InvalidInput(
            f"{where} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); nothing was "
            "written. Fix the file (JSON has no comments or trailing commas), or run without --write and "
            "add the printed entry by hand"
        ) from error
    if not isinstance(data, dict):
        raise InvalidInput(f"{where} holds a JSON {type(data).__name__}, not an object; nothing was written")
    current = data.setdefault(servers_key, {})
    if not isinstance(current, dict):
        raise InvalidInput(
            f'{where}: "{servers_key}" is a {type(current).__name__}, not an object; nothing was written'
        )
    before = current.get(name)
    if before == entry:
        return Merge("unchanged", existing, [])
    current[name] = entry
    changes = [f"{path}: added"] if before is None else _entry_changes(path, before, entry)
    return Merge("added" if before is None else "updated", render_json(data, indent=_indent_of(existing)), changes)


def _entry_changes(path: str, before: Any, after: Mapping[str, Any]) -> list[str]:
    if not isinstance(before, dict):
        return [f"{path}: replaced {_short(before)}"]
    changes = [
        f"{path}.{key}: {_short(before[key])} → {_short(value)}"
        if key in before
        else f"{path}.{key}: added {_short(value)}"
        for key, value in after.items()
        if before.get(key) != value or key not in before
    ]
    changes += [f"{path}.{key}: removed (was {_short(value)})" for key, value in before.items() if key not in after]
    return changes


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:79] + "…"


def _indent_of(text: str) -> str | int:
    """Keep the file's own indentation when rewriting it."""
    match = re.search(r"^([ \t]+)\S", text, re.MULTILINE)
    return match.group(1) if match else 2


def toml_entry_status(
    existing: str | None, document: Mapping[str, Any]
) -> Literal["absent", "same", "different", "invalid"]:
    """Whether a TOML config (Codex's) already holds the one server of ``document``; never writes."""
    ((servers_key, servers),) = document.items()
    ((name, entry),) = servers.items()
    if existing is None:
        return "absent"
    try:
        data = tomllib.loads(existing)
    except tomllib.TOMLDecodeError:
        return "invalid"
    present = data.get(servers_key, {}).get(name) if isinstance(data.get(servers_key), dict) else None
    if present is None:
        return "absent"
    return "same" if present == entry else "different"


def codex_add_command(spec: ServerSpec) -> list[str]:
    """The same entry through Codex's own CLI, which edits ~/.codex/config.toml itself."""
    if spec.url is not None:
        return ["codex", "mcp", "add", spec.name, "--url", spec.url, "--bearer-token-env-var", TOKEN_VARIABLE]
    project = str(spec.project_dir) if spec.project_dir is not None else None
    env = [part for key, value in spec.jetpack_env(project).items() for part in ("--env", f"{key}={value}")]
    return ["codex", "mcp", "add", spec.name, *env, "--", spec.command, *spec.args]
