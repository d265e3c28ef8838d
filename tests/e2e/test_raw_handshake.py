"""The wire as an agent sees it: `jetpack serve` driven with hand-written newline-delimited JSON-RPC,
the way Claude Code starts a stdio server."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import jetpack_command, subprocess_env
from e2e_helpers import REPO, TOOL_NAMES, RawServer

pytestmark = pytest.mark.e2e

CLAUDE_CODE = {"name": "claude-code", "version": "2.1.0"}


def _add_task(project: Path, title: str) -> str:
    out = subprocess.run(
        jetpack_command("task", "add", title, "--json"),
        env=subprocess_env(project),
        cwd=project,
        check=True,
        capture_output=True,
        text=True,
    )
    return str(json.loads(out.stdout)["created"][0]["id"])


def _assert_only_json_rpc(lines: list[bytes]) -> None:
    assert lines, "the server wrote nothing"
    for raw in lines:
        assert raw.endswith(b"\n"), raw
        try:
            message = json.loads(raw)
        except ValueError:
            pytest.fail(f"stray non-JSON output on the protocol stream: {raw[:200]!r}")
        assert isinstance(message, dict), raw[:200]
        assert message.get("jsonrpc") == "2.0", raw[:200]
        assert "id" in message or "method" in message, raw[:200]
        if "id" in message and "method" not in message:
            assert ("result" in message) != ("error" in message), raw[:200]


def test_claude_code_handshake_tools_and_a_claim(project: Path) -> None:
    task_id = _add_task(project, "Wire a real agent")
    with RawServer(project, JETPACK_AGENT="raw-agent") as server:
        init = server.request(
            "initialize",
            {"protocolVersion": "2025-06-18", "capabilities": {"roots": {}}, "clientInfo": CLAUDE_CODE},
        )
        assert "error" not in init, init
        result = init["result"]
        assert result["protocolVersion"] == "2025-06-18"
        assert result["serverInfo"]["name"] == "jetpack"
        assert "tools" in result["capabilities"]
        instructions = result.get("instructions")
        assert isinstance(instructions, str)
        assert instructions.strip()
        assert len(instructions.encode("utf-8")) <= 2048
        assert "claim_task" in instructions

        server.notify("notifications/initialized")
        listed = server.request("tools/list", {})
        tools: list[dict[str, Any]] = listed["result"]["tools"]
        names = [tool["name"] for tool in tools]
        assert sorted(names) == sorted(TOOL_NAMES)
        assert len(names) == len(TOOL_NAMES)  # no duplicates
        for tool in tools:
            assert tool.get("description"), tool["name"]
            assert tool["inputSchema"]["type"] == "object", tool["name"]

        call = server.request("tools/call", {"name": "claim_task", "arguments": {}})
        assert "result" in call, call
        claimed = call["result"]
        assert claimed.get("isError") is not True, claimed
        structured = claimed["structuredContent"]
        assert structured["id"] == task_id
        assert structured["assignee"] == "raw-agent"
        assert structured["state"] == "claimed"
        assert json.loads(claimed["content"][0]["text"])["id"] == task_id

        # The session shows up as a live agent, and it is known which client it is.
        agents = subprocess.run(
            jetpack_command("agents", "--json"),
            env=subprocess_env(project),
            cwd=project,
            check=True,
            capture_output=True,
            text=True,
        )
        record = {a["name"]: a for a in json.loads(agents.stdout)}["raw-agent"]
        assert record["live"] is True
        assert record.get("client_name") == "claude-code"

        # A second claim with nothing left is a result, not an error.
        empty = server.call_tool("claim_task", {})
        assert empty.get("isError") is not True, empty
        assert empty["structuredContent"]["id"] is None
        assert empty["structuredContent"]["reason"]

        assert server.close_stdin_and_wait() == 0, server.stderr
        _assert_only_json_rpc(server.lines)


@pytest.mark.parametrize("version", ["2024-11-05", "2025-03-26", "2025-11-25"])
def test_other_handshake_versions_are_negotiated(project: Path, version: str) -> None:
    with RawServer(project) as server:
        result = server.handshake("claude-code", protocol_version=version)
        assert result["protocolVersion"] == version
        listed = server.request("tools/list", {})
        assert {tool["name"] for tool in listed["result"]["tools"]} == TOOL_NAMES
        assert server.close_stdin_and_wait() == 0, server.stderr
        _assert_only_json_rpc(server.lines)


def test_tool_errors_are_results_and_the_stream_stays_clean(project: Path) -> None:
    with RawServer(project, JETPACK_AGENT="raw-errors") as server:
        server.handshake("claude-code")
        missing = server.call_tool("get_task", {"task_id": "jp-zzzz"})
        assert missing["isError"] is True
        assert "jp-zzzz" in missing["content"][0]["text"]
        invalid = server.call_tool("complete_task", {})
        assert invalid["isError"] is True
        assert server.close_stdin_and_wait() == 0, server.stderr
        _assert_only_json_rpc(server.lines)


STRAY_PRINTER = textwrap.dedent(
    """
    # Injected into the server process by test_raw_handshake.py: a badly behaved library that, once the
    # server is serving (the test creates $STRAY_GO), prints to stdout with print() and raw writes to fd 1.
    import os
    import threading
    import time
    from pathlib import Path

    def _stray():
        go, printed = Path(os.environ["STRAY_GO"]), Path(os.environ["STRAY_PRINTED"])
        deadline = time.monotonic() + 60
        while not go.exists():
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        while True:
            print("STRAY print from a library", flush=True)
            os.write(1, b"STRAY raw write to fd 1\\n")
            printed.touch()
            time.sleep(0.01)

    threading.Thread(target=_stray, daemon=True).start()
    """
)


def test_stray_prints_in_the_server_do_not_reach_the_protocol_stream(project: Path, tmp_path: Path) -> None:
    site = tmp_path / "stray_site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(STRAY_PRINTER)
    go, printed = tmp_path / "go", tmp_path / "printed"
    env = {
        "PYTHONPATH": os.pathsep.join([str(REPO), str(site)]),
        "STRAY_GO": str(go),
        "STRAY_PRINTED": str(printed),
        "JETPACK_LOG_LEVEL": "debug",
    }
    with RawServer(project, JETPACK_AGENT="raw-stray", **env) as server:
        result = server.handshake("claude-code")
        assert result["protocolVersion"] == "2025-06-18"
        go.touch()
        deadline = time.monotonic() + 60
        while not printed.exists():
            assert time.monotonic() < deadline, "the stray printer never ran"
            time.sleep(0.01)
        for _ in range(20):
            assert {t["name"] for t in server.request("tools/list", {})["result"]["tools"]} == TOOL_NAMES
            assert server.call_tool("claim_task", {})["structuredContent"]["id"] is None
        assert server.close_stdin_and_wait() == 0, server.stderr
        _assert_only_json_rpc(server.lines)
        # The stray writes went to stderr instead.
        assert "STRAY print from a library" in server.stderr
        assert "STRAY raw write to fd 1" in server.stderr
