"""Harness adapters: how one coding agent is run on one claimed task — configuration, not code.

An adapter is a command template, extra environment, the way Jetpack is handed to the agent as its
MCP server (the client's own config format), and a prompt template. The built-in ones:

* ``claude`` — Claude Code in print mode: ``claude -p PROMPT --mcp-config FILE --strict-mcp-config
  --allowedTools TOOL… --permission-mode acceptEdits --session-id UUID``;
* ``codex`` — ``codex exec --full-auto --skip-git-repo-check --cd DIR -c mcp_servers.jetpack.… PROMPT``;
* ``gemini`` — ``gemini --yolo --allowed-mcp-server-names jetpack -p PROMPT`` with its settings file
  named by ``GEMINI_CLI_SYSTEM_SETTINGS_PATH``;
* ``script`` — the built-in deterministic worker (``python -m jetpack.harness.script_agent``);
* ``custom`` — any command line (``--command``).

``.jetpack/harness.toml`` may override any field of a built-in adapter or add new ones
(``[adapters.NAME]`` with ``command``, ``env``, ``mcp_config``, ``prompt_file``, ``stdin``).
Placeholders in the command and environment: ``{prompt}``, ``{prompt_file}``, ``{mcp_config}``,
``{task_id}``, ``{agent}``, ``{skills}``, ``{session_id}``, ``{workdir}``, ``{project}``,
``{python}``; an argument that is exactly ``{mcp_args}`` becomes the Codex ``-c`` overrides.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from jetpack.errors import ConfigError, InvalidInput

HARNESS_FILE = "harness.toml"
SERVER_NAME = "jetpack"  # the key Jetpack has in each agent's MCP config (tools are mcp__jetpack__…)

McpFormat = Literal["claude", "codex", "gemini", "none"]
MCP_FORMATS: tuple[McpFormat, ...] = ("claude", "codex", "gemini", "none")

# Claude Code in print mode denies every tool not allowed here (there is nobody to ask): the Jetpack
# tools (all of the server's), reading and editing files, and git for the commit of the task's files.
# One argument each, as Claude Code documents it (a rule such as "Bash(git add:*)" holds a space).
CLAUDE_ALLOWED_TOOLS = (
    "mcp__jetpack",
    "Read",
    "Edit",
    "Write",
    "Glob",
    "Grep",
    "Bash(git status:*)",
    "Bash(git diff:*)",
    "Bash(git add:*)",
    "Bash(git commit:*)",
)


@dataclass(frozen=True)
class Adapter:
    name: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    mcp_config: McpFormat = "claude"
    prompt_file: Path | None = None  # a custom prompt template; None: the built-in one
    stdin: bool = False  # also write the prompt to the agent's stdin
    description: str = ""


BUILTIN_ADAPTERS: dict[str, Adapter] = {
    adapter.name: adapter
    for adapter in (
        Adapter(
            "claude",
            (
                "claude",
                "-p",
                "{prompt}",
                "--mcp-config",
                "{mcp_config}",
                "--strict-mcp-config",
                "--allowedTools",
                *CLAUDE_ALLOWED_TOOLS,
                "--permission-mode",
                "acceptEdits",
                "--session-id",
                "{session_id}",
            ),
            mcp_config="claude",
            description="Claude Code in print mode, Jetpack as its only MCP server",
        ),
        Adapter(
            "codex",
            ("codex", "exec", "--full-auto", "--skip-git-repo-check", "--cd", "{workdir}", "{mcp_args}", "{prompt}"),
            mcp_config="codex",
            description="Codex non-interactive (codex exec), Jetpack added to its MCP servers with -c overrides",
        ),
        Adapter(
            "gemini",
            ("gemini", "--yolo", "--allowed-mcp-server-names", SERVER_NAME, "-p", "{prompt}"),
            env={"GEMINI_CLI_SYSTEM_SETTINGS_PATH": "{mcp_config}"},
            mcp_config="gemini",
            description="Gemini CLI in prompt mode, Jetpack in the settings file it is pointed at",
        ),
        Adapter(
            "script",
            ("{python}", "-m", "jetpack.harness.script_agent", "--mcp-config", "{mcp_config}", "--task", "{task_id}"),
            mcp_config="claude",
            description="built-in deterministic worker: claims, reserves, appends a line per task, commits, completes",
        ),
    )
}
HARNESS_NAMES = (*BUILTIN_ADAPTERS, "custom")


def custom_adapter(command: str) -> Adapter:
    """``--harness custom --command "mybot --task {task_id} --prompt-file {prompt_file}"``."""
    try:
        argv = tuple(shlex.split(command))
    except ValueError as error:
        raise InvalidInput(f"--command is not a valid command line: {error}") from None
    if not argv:
        raise InvalidInput('--command is empty; e.g. --command "mybot --prompt-file {prompt_file}"')
    return Adapter("custom", argv, mcp_config="claude", description="a custom command")


def load_adapter(project_dir: Path, name: str, command: str | None = None) -> Adapter:
    """The adapter called ``name``: built in, or from ``.jetpack/harness.toml``, whose fields win."""
    overrides = _harness_file(project_dir)
    if name == "custom":
        if command is None and "custom" not in overrides:
            raise InvalidInput('--harness custom needs --command "…" (or [adapters.custom] in .jetpack/harness.toml)')
        base = custom_adapter(command) if command is not None else Adapter("custom", ())
    elif command is not None:
        raise InvalidInput(f"--command is for --harness custom; the {name} adapter has its own command")
    elif name in BUILTIN_ADAPTERS:
        base = BUILTIN_ADAPTERS[name]
    elif name in overrides:
        base = Adapter(name, ())
    else:
        known = sorted({*HARNESS_NAMES, *overrides})
        raise InvalidInput(f"unknown harness {name!r}; choose one of {', '.join(known)}")
    adapter = _apply(base, overrides.get(name, {}), project_dir)
    if not adapter.command:
        raise ConfigError(f"adapter {name!r} has no command; set [adapters.{name}] command in {HARNESS_FILE}")
    return adapter


def _harness_file(project_dir: Path) -> dict[str, dict[str, Any]]:
    path = project_dir / ".jetpack" / HARNESS_FILE
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    adapters = data.get("adapters", {})
    if set(data) - {"adapters"} or not isinstance(adapters, dict):
        raise ConfigError(f"{path}: only [adapters.NAME] tables belong here")
    return adapters


def _apply(base: Adapter, raw: Mapping[str, Any], project_dir: Path) -> Adapter:
    where = f".jetpack/{HARNESS_FILE} [adapters.{base.name}]"
    known = {"command", "env", "mcp_config", "prompt_file", "stdin", "description"}
    if unknown := set(raw) - known:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {', '.join(sorted(known))}")
    changes: dict[str, Any] = {}
    if "command" in raw:
        value = raw["command"]
        argv = shlex.split(value) if isinstance(value, str) else value
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv) or not argv:
            raise ConfigError(f"{where}: command must be a string or a list of strings")
        changes["command"] = tuple(argv)
    if "env" in raw:
        env = raw["env"]
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise ConfigError(f"{where}: env must be a table of strings")
        changes["env"] = {**base.env, **env}
    if "mcp_config" in raw:
        if raw["mcp_config"] not in MCP_FORMATS:
            raise ConfigError(f"{where}: mcp_config must be one of {', '.join(MCP_FORMATS)}")
        changes["mcp_config"] = raw["mcp_config"]
    if "prompt_file" in raw:
        prompt_file = (project_dir / str(raw["prompt_file"])).resolve()
        if not prompt_file.is_file():
            raise ConfigError(f"{where}: prompt_file {prompt_file} does not exist")
        changes["prompt_file"] = prompt_file
    for flag in ("stdin", "description"):
        if flag in raw:
            changes[flag] = raw[flag]
    return replace(base, **changes)


# --- the MCP server entry each client is given ---------------------------------------------------


@dataclass(frozen=True)
class ServerEntry:
    """How the agent launches Jetpack: this Python, ``-m jetpack serve``, the worker's identity."""

    command: str
    args: tuple[str, ...]
    env: Mapping[str, str]

    @classmethod
    def for_worker(cls, env: Mapping[str, str]) -> ServerEntry:
        return cls(sys.executable, ("-m", "jetpack", "serve"), dict(env))


def claude_mcp_config(entry: ServerEntry) -> dict[str, Any]:
    """Claude Code's ``--mcp-config`` (``.mcp.json``) format; the script worker reads it too."""
    return {
        "mcpServers": {
            SERVER_NAME: {"type": "stdio", "command": entry.command, "args": list(entry.args), "env": dict(entry.env)}
        }
    }


def gemini_settings(entry: ServerEntry) -> dict[str, Any]:
    """Gemini CLI settings: the server trusted, so its tool calls need no confirmation."""
    return {
        "mcpServers": {
            SERVER_NAME: {"command": entry.command, "args": list(entry.args), "env": dict(entry.env), "trust": True}
        }
    }


def codex_overrides(entry: ServerEntry) -> list[str]:
    """``-c key=value`` overrides (values are TOML) that add Jetpack to Codex's MCP servers for one run.
    Codex clears its servers' environment, so the worker's identity goes in ``env``."""
    prefix = f"mcp_servers.{SERVER_NAME}"
    env = ", ".join(f"{key} = {_toml_string(value)}" for key, value in entry.env.items())
    values = [
        f"{prefix}.command={_toml_string(entry.command)}",
        f"{prefix}.args=[{', '.join(_toml_string(a) for a in entry.args)}]",
        f"{prefix}.env={{{env}}}",
        f"{prefix}.startup_timeout_sec=30",
    ]
    return [part for value in values for part in ("-c", value)]


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a TOML basic string


# --- filling in the templates -----------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def fill(template: str, values: Mapping[str, str]) -> str:
    """Replace the known ``{name}`` placeholders; anything else in braces stays as written."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def command_line(adapter: Adapter, values: Mapping[str, str], mcp_args: Sequence[str]) -> list[str]:
    argv: list[str] = []
    for part in adapter.command:
        if part == "{mcp_args}":
            argv.extend(mcp_args)
        else:
            argv.append(fill(part, values))
    return argv
