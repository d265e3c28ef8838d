"""A minimal Streamable HTTP MCP client (http.client + json), for tests and benchmarks that run many
agents at once: the SDK's Python client costs more CPU per call than a 2-CPU machine can spare for
dozens of sessions. One instance is one MCP session (initialize, then tools/call) on one keep-alive
connection; answers may come as JSON or as an SSE stream.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

PROTOCOL = "2025-06-18"


class HttpAgent:
    """One MCP session over one keep-alive connection: JSON or SSE answers, session id header."""

    def __init__(self, port: int, name: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.session: str | None = None
        self.next_id = 0
        self.name = name
        self.request(
            "initialize",
            {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": name, "version": "1"}},
        )
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        self.call("register_agent", {"name": name})

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> HttpAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def post(self, message: dict[str, Any]) -> dict[str, Any] | None:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": PROTOCOL,
        }
        if self.session:
            headers["Mcp-Session-Id"] = self.session
        self.conn.request("POST", "/mcp", body=json.dumps(message), headers=headers)
        response = self.conn.getresponse()
        self.session = response.getheader("mcp-session-id") or self.session
        body = response.read()
        if response.status == 202:
            return None
        if response.status >= 400:
            raise RuntimeError(f"HTTP {response.status}: {body[:300]!r}")
        if (response.getheader("content-type") or "").startswith("text/event-stream"):
            for line in body.decode().splitlines():
                if line.startswith("data:"):
                    found: dict[str, Any] = json.loads(line[5:])
                    if found.get("id") == message.get("id"):
                        return found
            raise RuntimeError(f"no answer in the event stream: {body[:300]!r}")
        answer: dict[str, Any] = json.loads(body)
        return answer

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        reply = self.post({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        if reply is None or "error" in reply:
            raise RuntimeError(f"{method}: {reply}")
        result: dict[str, Any] = reply["result"]
        return result

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = self.request("tools/call", {"name": tool, "arguments": arguments})
        if result.get("isError"):
            raise RuntimeError(f"{tool}: {result['content'][0]['text']}")
        structured: dict[str, Any] = result.get("structuredContent") or {}
        return structured
