"""Helpers for tests of `jetpack serve --http`: a real server subprocess on a free port, real MCP
clients over Streamable HTTP or SSE, tokens made by the real CLI.

Reusable for scale-out tests (two `HttpServer`s on one project) and benchmarks (many `connect`s):

    with HttpServer(project, "--log-level", "info") as server:      # waits until /healthz answers
        token = create_token(project, agent="alice")
        async with connect(server, "http", token=token) as client:  # or "sse"
            await client.call_tool("claim_task", {})
        assert server.stop() == 0                                    # SIGTERM, exit status
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx2
import pytest
from conftest import jetpack_command, subprocess_env
from e2e_helpers import RESPONSE_TIMEOUT, kill_process, server_env
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

STARTUP_TIMEOUT = 60.0  # only against hangs


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def init_project(project: Path, **server_settings: Any) -> None:
    """`jetpack init`, then the given ``[server]`` settings (e.g. rate_limit_per_second=0)."""
    subprocess.run(jetpack_command("init"), env=subprocess_env(project), check=True, capture_output=True)
    if server_settings:
        config = project / ".jetpack" / "config.toml"
        lines = "".join(f"{key} = {_toml(value)}\n" for key, value in server_settings.items())
        config.write_text(config.read_text().replace("[server]\n", "[server]\n" + lines, 1))


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def run_cli(project: Path, *args: str) -> str:
    """Run `jetpack ARGS` for the project; its stdout."""
    done = subprocess.run(
        jetpack_command(*args),
        check=False,
        env=subprocess_env(project),
        capture_output=True,
        text=True,
        timeout=RESPONSE_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def add_task(project: Path, title: str, *args: str) -> str:
    """`jetpack task add TITLE ARGS` as 'planner'; the new task's id."""
    out = json.loads(run_cli(project, "task", "add", title, "--as", "planner", "--json", *args))
    return str(out["created"][0]["id"])


@pytest.fixture(name="project")
def initialised_project(tmp_path: Path) -> Path:
    """A `jetpack init`ed project without a rate limit (import it into a test module to use it)."""
    init_project(tmp_path, rate_limit_per_second=0)
    return tmp_path


@pytest.fixture(name="server")
def loopback_server(project: Path) -> Iterator[HttpServer]:
    """`jetpack serve --http` on loopback for ``project``."""
    with HttpServer(project) as running:
        yield running


def create_token(project: Path, agent: str | None = None) -> str:
    """A new token's secret, made by `jetpack token create` (bound to ``agent`` if given)."""
    return run_cli(project, "token", "create", *(["--agent", agent] if agent else [])).strip()


class HttpServer:
    """`python -m jetpack serve --http` on a free port; its log (stderr) goes to a file we can read."""

    def __init__(self, project: Path, *args: str, host: str = "127.0.0.1", port: int | None = None, **env: str) -> None:
        self.project = project
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"  # clients connect through loopback whatever the bind
        self.log_path = project / f"server-{self.port}.log"
        env.setdefault("JETPACK_EMBEDDER", "hash")
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jetpack", "serve", "--http", "--host", host, "--port", str(self.port), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=server_env(project, **env),
                cwd=str(project),
            )
        self._wait_until_healthy()

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log}")
            with contextlib.suppress(httpx2.TransportError):
                if httpx2.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    return
            time.sleep(0.05)
        raise AssertionError(f"server did not answer /healthz within {STARTUP_TIMEOUT}s:\n{self.log}")

    @property
    def mcp_url(self) -> str:
        return f"{self.url}/mcp"

    @property
    def sse_url(self) -> str:
        return f"{self.url}/sse"

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def health(self, token: str | None = None) -> dict[str, Any]:
        response = httpx2.get(f"{self.url}/healthz", headers=auth_header(token), timeout=RESPONSE_TIMEOUT)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and wait for the exit status."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        return self.proc.wait(timeout=RESPONSE_TIMEOUT)

    def __enter__(self) -> HttpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        kill_process(self.proc)


def auth_header(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@contextlib.asynccontextmanager
async def connect(
    server: HttpServer,
    transport: Literal["http", "sse"] = "http",
    *,
    token: str | None = None,
    mode: Literal["legacy", "auto"] = "legacy",
    **client_options: Any,
) -> AsyncIterator[Client]:
    """A real MCP client of ``server`` over Streamable HTTP or SSE (legacy: the initialize
    handshake of today's agents; auto: the 2026 protocol). ``client_options`` go to ``Client``
    (e.g. ``message_handler``)."""
    if transport == "http":
        http = httpx2.AsyncClient(headers=auth_header(token), timeout=RESPONSE_TIMEOUT)
        transport_streams = streamable_http_client(server.mcp_url, http_client=http)
        async with http, Client(transport_streams, mode=mode, **client_options) as client:
            yield client
    else:
        streams = sse_client(server.sse_url, headers=auth_header(token), timeout=RESPONSE_TIMEOUT)
        async with Client(streams, mode=mode, **client_options) as client:
            yield client
