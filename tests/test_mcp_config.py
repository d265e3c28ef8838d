"""`jetpack mcp config`: each client's entry in its own format, merged into its file without losing anything."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import REPO, jetpack_command, subprocess_env

from jetpack.cli.main import main
from jetpack.mcp_clients import looks_like_secret, render_json, render_toml

URL = "http://127.0.0.1:8765/mcp"
SSE_URL = "http://127.0.0.1:8765/sse"
CLAUDE_STDIO_ENV = {"JETPACK_PROJECT_DIR": "${CLAUDE_PROJECT_DIR:-.}"}


@pytest.fixture(autouse=True)
def codex_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Codex's config lives here during the tests, never in the real home directory."""
    home = tmp_path / "codex-home"
    monkeypatch.setenv("CODEX_HOME", str(home))
    for variable in ("JETPACK_PROJECT_DIR", "CLAUDE_PROJECT_DIR", "JETPACK_AGENT", "JETPACK_SKILLS"):
        monkeypatch.delenv(variable, raising=False)
    return home


def run(project: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--project", str(project), "mcp", "config", *args])


def config(project: Path, *args: str) -> Result:
    result = run(project, *args)
    assert result.exit_code == 0, result.output
    return result


def parse(client: str, text: str) -> dict[str, Any]:
    return tomllib.loads(text) if client == "codex" else dict(json.loads(text))


# --- each client's format -----------------------------------------------------------------------------


def expected_documents(project: Path) -> list[tuple[str, list[str], dict[str, Any]]]:
    stdio = {"command": "jetpack", "args": ["serve"]}
    return [
        ("claude", [], {"mcpServers": {"jetpack": {"type": "stdio", **stdio, "env": CLAUDE_STDIO_ENV}}}),
        (
            "claude",
            ["--agent", "blue-heron", "--skills", "sql, Python"],
            {
                "mcpServers": {
                    "jetpack": {
                        "type": "stdio",
                        **stdio,
                        "env": {**CLAUDE_STDIO_ENV, "JETPACK_AGENT": "blue-heron", "JETPACK_SKILLS": "sql,python"},
                    }
                }
            },
        ),
        (
            "claude",
            ["--http", URL],
            {
                "mcpServers": {
                    "jetpack": {"type": "http", "url": URL, "headers": {"Authorization": "Bearer ${JETPACK_TOKEN}"}}
                }
            },
        ),
        (
            "claude",
            ["--http", SSE_URL],
            {
                "mcpServers": {
                    "jetpack": {"type": "sse", "url": SSE_URL, "headers": {"Authorization": "Bearer ${JETPACK_TOKEN}"}}
                }
            },
        ),
        (
            "codex",
            ["--skills", "python"],
            {
                "mcp_servers": {
                    "jetpack": {
                        **stdio,
                        "env": {"JETPACK_PROJECT_DIR": str(project), "JETPACK_SKILLS": "python"},
                        "env_vars": ["JETPACK_AGENT"],
                        "startup_timeout_sec": 20,
                    }
                }
            },
        ),
        (
            "codex",
            ["--agent", "blue-heron"],
            {
                "mcp_servers": {
                    "jetpack": {
                        **stdio,
                        "env": {"JETPACK_PROJECT_DIR": str(project), "JETPACK_AGENT": "blue-heron"},
                        "startup_timeout_sec": 20,
                    }
                }
            },
        ),
        (
            "codex",
            ["--http", URL],
            {"mcp_servers": {"jetpack": {"url": URL, "bearer_token_env_var": "JETPACK_TOKEN"}}},
        ),
        (
            "cursor",
            [],
            {"mcpServers": {"jetpack": {**stdio, "env": {"JETPACK_PROJECT_DIR": "${workspaceFolder}"}}}},
        ),
        (
            "cursor",
            ["--http", URL],
            {"mcpServers": {"jetpack": {"url": URL, "headers": {"Authorization": "Bearer ${env:JETPACK_TOKEN}"}}}},
        ),
        (
            "cursor",
            ["--http", SSE_URL],
            {"mcpServers": {"jetpack": {"url": SSE_URL, "headers": {"Authorization": "Bearer ${env:JETPACK_TOKEN}"}}}},
        ),
        ("gemini", [], {"mcpServers": {"jetpack": stdio}}),
        (
            "gemini",
            ["--skills", "python"],
            {"mcpServers": {"jetpack": {**stdio, "env": {"JETPACK_SKILLS": "python"}}}},
        ),
        (
            "gemini",
            ["--http", URL],
            {"mcpServers": {"jetpack": {"httpUrl": URL, "headers": {"Authorization": "Bearer ${JETPACK_TOKEN}"}}}},
        ),
        (
            "gemini",
            ["--http", SSE_URL],
            {"mcpServers": {"jetpack": {"url": SSE_URL, "headers": {"Authorization": "Bearer ${JETPACK_TOKEN}"}}}},
        ),
    ]


CASES = expected_documents(Path("/placeholder"))


@pytest.mark.parametrize(
    "index", range(len(CASES)), ids=[f"{client}-{' '.join(args) or 'stdio'}" for client, args, _ in CASES]
)
def test_output_parses_as_the_clients_format_and_round_trips(project: Path, index: int) -> None:
    client, args, expected = expected_documents(project)[index]
    launcher = [] if "--http" in args else ["--command", "jetpack"]
    text = config(project, "--client", client, *launcher, *args).stdout

    document = parse(client, text)

    assert document == expected
    assert (render_toml(document) if client == "codex" else render_json(document)) == text


def test_codex_refuses_sse_because_it_speaks_only_streamable_http(project: Path) -> None:
    result = run(project, "--client", "codex", "--http", SSE_URL)
    assert result.exit_code == 1
    assert "Codex connects over stdio and Streamable HTTP, not HTTP+SSE" in result.stderr
    assert result.stdout == ""


def test_a_url_without_a_path_gets_the_mcp_endpoint(project: Path) -> None:
    result = config(project, "--client", "claude", "--http", "http://127.0.0.1:8765")
    assert json.loads(result.stdout)["mcpServers"]["jetpack"]["url"] == URL
    assert "using http://127.0.0.1:8765/mcp" in result.stderr


def test_name_sets_the_servers_key(project: Path) -> None:
    text = config(project, "--client", "codex", "--http", URL, "--name", "jetpack-remote").stdout
    assert text.startswith("[mcp_servers.jetpack-remote]\n")
    assert list(tomllib.loads(text)["mcp_servers"]) == ["jetpack-remote"]


def test_command_with_spaces_becomes_command_and_leading_args(project: Path) -> None:
    text = config(project, "--client", "cursor", "--command", "uv run jetpack").stdout
    entry = json.loads(text)["mcpServers"]["jetpack"]
    assert (entry["command"], entry["args"]) == ("uv", ["run", "jetpack", "serve"])


def test_hub_adds_jetpack_hub_to_the_servers_environment(project: Path) -> None:
    entry = json.loads(config(project, "--client", "claude", "--hub").stdout)["mcpServers"]["jetpack"]
    assert entry["env"]["JETPACK_HUB"] == "1" and entry["args"] == ["serve"]
    codex = tomllib.loads(config(project, "--client", "codex", "--hub").stdout)["mcp_servers"]["jetpack"]
    assert codex["env"]["JETPACK_HUB"] == "1"
    refused = run(project, "--client", "claude", "--http", URL, "--hub")
    assert refused.exit_code == 1 and "--hub configure a server the client launches" in refused.stderr


def test_stdio_options_are_refused_over_http(project: Path) -> None:
    result = run(project, "--client", "claude", "--http", URL, "--agent", "blue-heron")
    assert result.exit_code == 1
    assert "--agent configure a server the client launches (stdio)" in result.stderr
    assert "jetpack token create --agent NAME" in result.stderr


def test_json_reports_the_config_and_its_text(project: Path) -> None:
    report = json.loads(config(project, "--client", "codex", "--http", URL, "--json").stdout)
    assert report["client"] == "codex"
    assert report["transport"] == "http"
    assert report["format"] == "toml"
    assert report["config"] == tomllib.loads(report["text"])
    assert report["action"] is None


def test_help_has_examples() -> None:
    result = CliRunner().invoke(main, ["mcp", "config", "--help"])
    assert result.exit_code == 0
    example = result.stdout.split("Example:", 1)[1]
    assert "jetpack mcp config --client claude" in example
    assert "--http http://127.0.0.1:8765/mcp --write" in example
    assert "--token" not in result.stdout


# --- --write --------------------------------------------------------------------------------------------

PROJECT_FILES = {"claude": ".mcp.json", "cursor": ".cursor/mcp.json", "gemini": ".gemini/settings.json"}


@pytest.mark.parametrize("transport", ["stdio", "http"])
@pytest.mark.parametrize("client", sorted(PROJECT_FILES))
def test_write_merges_keeping_other_servers_and_keys_and_is_idempotent(
    project: Path, client: str, transport: str
) -> None:
    path = project / PROJECT_FILES[client]
    path.parent.mkdir(exist_ok=True)
    other = {"command": "npx", "args": ["-y", "other-server"]}
    path.write_text(json.dumps({"theme": "Dracula", "mcpServers": {"other": other}}, indent=2) + "\n")
    args = ["--client", client, *(["--http", URL] if transport == "http" else ["--command", "jetpack"])]
    printed = json.loads(config(project, *args).stdout)["mcpServers"]["jetpack"]

    first = config(project, *args, "--write")
    after_first = path.read_bytes()
    second = config(project, *args, "--write")

    assert f"Added mcpServers.jetpack ({'http ' + URL if transport == 'http' else 'stdio: jetpack serve'})" in (
        first.stdout
    )
    assert "already has this mcpServers.jetpack entry; nothing changed" in second.stdout
    assert path.read_bytes() == after_first
    assert json.loads(after_first) == {"theme": "Dracula", "mcpServers": {"other": other, "jetpack": printed}}


def test_write_creates_the_file_and_its_directory(project: Path) -> None:
    result = config(project, "--client", "cursor", "--command", "jetpack", "--write")
    path = project / ".cursor" / "mcp.json"
    assert result.stdout.startswith(f"Created {path} with mcpServers.jetpack")
    assert json.loads(path.read_text()) == json.loads(
        config(project, "--client", "cursor", "--command", "jetpack").stdout
    )


def test_write_reports_what_it_changed_in_an_existing_entry(project: Path) -> None:
    config(project, "--client", "claude", "--command", "jetpack", "--write")

    result = config(project, "--client", "claude", "--http", URL, "--write")

    lines = result.stdout.splitlines()
    assert lines[0] == f"Updated mcpServers.jetpack in {project / '.mcp.json'}:"
    assert '  mcpServers.jetpack.type: "stdio" → "http"' in lines
    assert f'  mcpServers.jetpack.url: added "{URL}"' in lines
    assert '  mcpServers.jetpack.command: removed (was "jetpack")' in lines
    entry = json.loads((project / ".mcp.json").read_text())["mcpServers"]["jetpack"]
    assert entry == {"type": "http", "url": URL, "headers": {"Authorization": "Bearer ${JETPACK_TOKEN}"}}


def test_write_keeps_the_files_indentation(project: Path) -> None:
    path = project / ".mcp.json"
    path.write_text(json.dumps({"mcpServers": {}}, indent=4))
    config(project, "--client", "claude", "--command", "jetpack", "--write")
    assert '\n    "mcpServers": {\n        "jetpack": {\n' in path.read_text()


@pytest.mark.parametrize(
    "content",
    [
        '{"mcpServers": {"other": {"command": "x"},}}',  # trailing comma
        '{\n  // a comment\n  "mcpServers": {}\n}',
        '["not", "an", "object"]',
        '{"mcpServers": ["not", "an", "object"]}',
    ],
    ids=["trailing-comma", "comment", "array", "servers-not-object"],
)
def test_write_refuses_a_file_that_is_not_a_json_object_and_leaves_it_untouched(project: Path, content: str) -> None:
    path = project / ".gemini" / "settings.json"
    path.parent.mkdir()
    path.write_text(content)

    result = run(project, "--client", "gemini", "--command", "jetpack", "--write")

    assert result.exit_code == 1
    assert f"error: {path}" in result.stderr
    assert "nothing was written" in result.stderr
    assert path.read_text() == content
    assert sorted(p.name for p in path.parent.iterdir()) == ["settings.json"]


def test_write_goes_through_a_symlinked_config(project: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared-mcp.json"
    shared.write_text('{"mcpServers": {}}')
    (project / ".mcp.json").symlink_to(shared)

    config(project, "--client", "claude", "--command", "jetpack", "--write")

    assert (project / ".mcp.json").is_symlink()
    assert "jetpack" in json.loads(shared.read_text())["mcpServers"]


def test_codex_write_says_where_to_put_it_and_never_writes(project: Path, codex_home: Path) -> None:
    args = ["--client", "codex", "--command", "jetpack", "--skills", "python"]
    snippet = config(project, *args).stdout
    path = codex_home / "config.toml"

    absent = config(project, *args, "--write").stdout
    assert absent.startswith(f"Jetpack does not edit files in your home directory. Add this to {path}:")
    assert snippet in absent
    assert (
        f"codex mcp add jetpack --env JETPACK_PROJECT_DIR={project} --env JETPACK_SKILLS=python -- jetpack serve"
        in (absent)
    )
    assert not codex_home.exists()

    codex_home.mkdir()
    path.write_text('model = "o4"\n\n' + snippet)
    assert config(project, *args, "--write").stdout.startswith(f"{path} already has this [mcp_servers.jetpack] entry")

    different = config(project, "--client", "codex", "--command", "jetpack", "--write").stdout
    assert different.startswith(f"{path} has a different [mcp_servers.jetpack]; replace it with:")
    assert path.read_text() == 'model = "o4"\n\n' + snippet


# --- tokens -------------------------------------------------------------------------------------------

A_TOKEN = "jpt_" + secrets.token_urlsafe(32)  # shaped like `jetpack token create` output


@pytest.mark.parametrize(
    "args",
    [
        ["--token", "anything"],
        ["--agent", A_TOKEN],
        ["--skills", f"Bearer {A_TOKEN}"],
        ["--name", secrets.token_hex(16)],
        ["--http", f"{URL}?token=abc"],
        ["--http", f"{URL}?t={A_TOKEN}"],
        ["--http", f"http://agent:{A_TOKEN}@127.0.0.1:8765/mcp"],
        ["--http", f"http://127.0.0.1:8765/{secrets.token_hex(20)}/mcp"],
        ["--http", f"{URL}#{A_TOKEN}"],
    ],
    ids=["--token", "agent", "skills-bearer", "name-hex", "query-key", "query-value", "userinfo", "path", "fragment"],
)
@pytest.mark.parametrize("client", ["claude", "codex"])
def test_a_token_looking_value_is_refused_and_nothing_is_written(project: Path, client: str, args: list[str]) -> None:
    result = run(project, "--client", client, *args, "--write")

    assert result.exit_code == 1
    assert "export JETPACK_TOKEN=" in result.stderr
    assert result.stdout == ""
    assert list(project.iterdir()) == []


@pytest.mark.parametrize("client", ["claude", "codex", "cursor", "gemini"])
def test_the_token_in_the_environment_is_never_written(
    project: Path, client: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JETPACK_TOKEN", A_TOKEN)
    result = config(project, "--client", client, "--http", URL, "--write", "--json")
    assert A_TOKEN not in result.output
    assert all(A_TOKEN not in p.read_text() for p in project.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("value", "secret"),
    [
        ("blue-heron", False),
        ("cli-root", False),
        ("python,sql,typescript", False),
        ("frontend-reviewer-2", False),
        (secrets.token_urlsafe(32), True),
        (secrets.token_hex(32), True),
        ("Bearer abc", True),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", True),
        ("sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a", True),
        ("jpt_Xc91aQ2k", True),
        ("jpt_" + secrets.token_urlsafe(32), True),
    ],
)
def test_looks_like_secret(value: str, secret: bool) -> None:
    assert looks_like_secret(value) is secret


# --- the command as agents' users run it, and the docs that show it ----------------------------------


@pytest.mark.e2e
def test_write_through_a_real_subprocess(project: Path) -> None:
    (project / ".mcp.json").write_text('{"mcpServers": {"other": {"command": "x"}}}\n')
    done = subprocess.run(
        jetpack_command("mcp", "config", "--client", "claude", "--skills", "python", "--write"),
        env=subprocess_env(project),
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    servers = json.loads((project / ".mcp.json").read_text())["mcpServers"]
    assert list(servers) == ["other", "jetpack"]
    assert servers["jetpack"]["env"]["JETPACK_SKILLS"] == "python"


@pytest.mark.e2e
@pytest.mark.skipif(not (Path(sys.executable).parent / "jetpack").is_file(), reason="jetpack is not installed")
@pytest.mark.parametrize("on_path", [True, False])
def test_default_command_is_plain_jetpack_only_when_path_finds_this_one(
    project: Path, tmp_path: Path, on_path: bool
) -> None:
    installed = Path(sys.executable).parent / "jetpack"
    path = str(installed.parent) if on_path else str(tmp_path)  # an empty directory: no jetpack there
    done = subprocess.run(
        jetpack_command("mcp", "config", "--client", "claude"),
        env=subprocess_env(project, PATH=path),
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    command = json.loads(done.stdout)["mcpServers"]["jetpack"]["command"]
    assert command == ("jetpack" if on_path else str(installed.absolute()))
    assert ("jetpack is not on PATH" in done.stderr) is not on_path


def test_mcp_json_example_is_what_the_command_prints(project: Path) -> None:
    local = json.loads(config(project, "--client", "claude", "--command", "jetpack", "--skills", "python,sql").stdout)
    remote = json.loads(config(project, "--client", "claude", "--http", URL, "--name", "jetpack-remote").stdout)

    example = json.loads((REPO / "mcp.json.example").read_text())

    assert example == {"mcpServers": {**local["mcpServers"], **remote["mcpServers"]}}


README_COMMANDS = [
    ["--client", "claude", "--skills", "python,sql"],
    ["--client", "codex", "--skills", "python"],
    ["--client", "codex", "--http", URL],
    ["--client", "cursor", "--http", URL],
    ["--client", "gemini", "--http", URL],
]


def launcher(args: list[str]) -> list[str]:
    """The README assumes `jetpack` is on PATH, which these tests cannot."""
    return [] if "--http" in args else ["--command", "jetpack"]


def test_readme_examples_are_what_the_command_prints() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Register Jetpack with your agents", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(json|toml)\n(.*?)```", section, re.DOTALL)
    project = Path("/abs/path/to/project")

    printed = [
        CliRunner().invoke(main, ["--project", str(project), "mcp", "config", *args, *launcher(args)]).stdout
        for args in README_COMMANDS
    ]

    assert [text for _, text in blocks] == printed
    for command in README_COMMANDS:
        shown = "jetpack mcp config " + " ".join(command)
        assert shown in section, f"README should show `{shown}` for its example"


def test_readme_table_has_a_row_per_client_and_transport() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Register Jetpack with your agents", 1)[1].split("\n## ", 1)[0]
    for client in ("claude", "codex", "cursor", "gemini"):
        assert f"`jetpack mcp config --client {client}" in section
        assert re.search(rf"`jetpack mcp config --client {client} --http {re.escape(URL)}", section)
