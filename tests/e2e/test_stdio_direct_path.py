"""The stdio transport answers tool calls of handshake-era sessions directly; it must answer exactly
as the SDK's own request pipeline does (JETPACK_STDIO_DIRECT=0 sends everything through the SDK)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.e2e_helpers import RawServer

pytestmark = pytest.mark.e2e

CALLS: list[tuple[str, dict[str, Any]]] = [
    ("claim_task", {}),  # nothing ready: id null and a reason
    ("get_task", {"task_id": "jp-zzzz"}),  # a ToolError
    ("complete_task", {"task_id": "'; DROP TABLE tasks; --"}),  # refused id
    ("create_tasks", {"tasks": [{"title": "x", "priority": 9}]}),  # argument validation
    ("create_tasks", {"tasks": "not a list"}),
    ("update_task", {"task_id": "jp-zzzz", "status": "done"}),
    ("list_tasks", {"cursor": "garbage"}),
    ("list_tasks", {}),  # an empty page
]


def transcript(project: Path, direct: bool, protocol_version: str) -> list[dict[str, Any]]:
    env = {} if direct else {"JETPACK_STDIO_DIRECT": "0"}
    with RawServer(project, JETPACK_AGENT="parity", JETPACK_LOG_LEVEL="info", **env) as server:
        server.handshake(protocol_version=protocol_version)
        replies = [server.request("tools/call", {"name": name, "arguments": args}) for name, args in CALLS]
        server.close_stdin_and_wait()
        assert ("answering tool calls" in server.stderr) == direct  # the path under test really ran
        return replies


@pytest.mark.parametrize("protocol_version", ["2025-06-18", "2025-11-25"])
def test_direct_answers_match_the_sdk_pipeline(tmp_path: Path, protocol_version: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    direct = transcript(tmp_path / "a", True, protocol_version)
    through_sdk = transcript(tmp_path / "b", False, protocol_version)
    for (name, _), mine, theirs in zip(CALLS, direct, through_sdk, strict=True):
        assert mine == theirs, name


def test_successful_results_have_the_sdk_shape(tmp_path: Path) -> None:
    shapes = []
    for label, env in (("direct", {}), ("sdk", {"JETPACK_STDIO_DIRECT": "0"})):
        project = tmp_path / label
        project.mkdir()
        with RawServer(project, JETPACK_AGENT="parity", **env) as server:
            server.handshake()
            created = server.call_tool("create_tasks", {"tasks": [{"title": "one"}]})
            claimed = server.call_tool("claim_task", {})
            done = server.call_tool("complete_task", {"task_id": claimed["structuredContent"]["id"]})
        shapes.append(
            [
                (sorted(r), r["isError"], sorted(r["structuredContent"]), r["content"][0]["type"])
                for r in (created, claimed, done)
            ]
        )
    assert shapes[0] == shapes[1]
