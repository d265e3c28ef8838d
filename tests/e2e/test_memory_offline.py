"""Memory with no network at all: a real `jetpack serve` whose process refuses every outbound socket
loads the packaged MiniLM model on the first memory call and recalls by meaning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import REPO, RawServer

pytestmark = pytest.mark.e2e

SOCKET_BLOCKER = """
import socket
import sys


def _refuse(*args, **kwargs):
    sys.stderr.write("OFFLINE-TEST: outbound network attempt refused\\n")
    raise OSError("network disabled by the offline test")


socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
sys.stderr.write("OFFLINE-TEST: sockets blocked\\n")
"""


def _call(server: RawServer, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    reply = server.request("tools/call", {"name": tool, "arguments": arguments})
    assert "result" in reply, reply
    result = reply["result"]
    assert not result.get("isError"), result
    return result["structuredContent"]  # type: ignore[no-any-return]


def test_remember_and_recall_by_meaning_with_every_socket_refused(project: Path, tmp_path: Path) -> None:
    site = tmp_path / "offline-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SOCKET_BLOCKER)
    env = {"PYTHONPATH": f"{site}:{REPO}", "HF_HOME": str(tmp_path / "no-hf-cache"), "JETPACK_AGENT": "offline"}
    with RawServer(project, **env) as server:
        server.handshake()
        for fact in [
            "The CI pipeline caches pip wheels between runs",
            "Credentials are hashed with bcrypt, cost 12",
            "The dashboard polls nothing: events are pushed over a WebSocket",
        ]:
            _call(server, "remember", {"content": fact})
        found = _call(server, "recall_memory", {"query": "how are user passwords stored?", "k": 1})
    assert "OFFLINE-TEST: sockets blocked" in server.stderr
    assert found["memories"][0]["snippet"] == "Credentials are hashed with bcrypt, cost 12"
