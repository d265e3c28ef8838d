"""Helpers shared by the end-to-end tests: real `jetpack serve` processes, raw JSON-RPC, the DB file.

(Named e2e_helpers rather than helpers so it cannot shadow another test directory's helpers module
under pytest's default import mode.)
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlean

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

TOOL_NAMES = frozenset(
    {
        "register_agent",
        "list_agents",
        "query_graph",
        "create_tasks",
        "list_tasks",
        "get_task",
        "claim_task",
        "update_task",
        "complete_task",
        "fail_task",
        "add_dependency",
        "send_mail",
        "fetch_inbox",
        "mark_mail",
        "get_thread",
        "search_mail",
        "reserve_files",
        "renew_files",
        "release_files",
        "check_files",
        "announce_intent",
        "recall_memory",
        "remember",
        "rate_memory",
    }
)

# Generous bounds that only exist so a broken build cannot hang the suite.
RESPONSE_TIMEOUT = 60.0


def server_env(project: Path, **extra: str) -> dict[str, str]:
    """The environment for a `jetpack serve` child: explicit PATH/PYTHONPATH, no leaked JETPACK_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JETPACK_", "CLAUDE"))}
    env["JETPACK_PROJECT_DIR"] = str(project)
    env["PYTHONPATH"] = str(REPO)
    env["PATH"] = os.environ.get("PATH", "")
    env.update(extra)
    return env


def db_path(project: Path) -> Path:
    return project / ".jetpack" / "jetpack.db"


def write_config(project: Path, text: str) -> None:
    state = project / ".jetpack"
    state.mkdir(parents=True, exist_ok=True)
    (state / "config.toml").write_text(text)


@contextlib.contextmanager
def open_db(path: Path) -> Iterator[Any]:
    """A plain read connection to the database file (not through Jetpack)."""
    conn = sqlean.connect(str(path), timeout=30)
    try:
        yield conn
    finally:
        conn.close()


def integrity_check(path: Path) -> list[str]:
    with open_db(path) as conn:
        return [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]


def kill_process(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL a child we started (no-op when it already exited) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.close()


class RawServer:
    """`python -m jetpack serve` driven by hand over newline-delimited JSON-RPC on its stdio."""

    def __init__(self, project: Path, **env: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jetpack", "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=server_env(project, **env),
            cwd=str(project),
        )
        self.lines: list[bytes] = []  # every line the server wrote to stdout, verbatim
        self._inbox: queue.Queue[bytes | None] = queue.Queue()
        self._stderr: list[bytes] = []
        self._next_id = 0
        self._pumps = [
            threading.Thread(target=self._pump_stdout, daemon=True),
            threading.Thread(target=self._pump_stderr, daemon=True),
        ]
        for pump in self._pumps:
            pump.start()

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self._inbox.put(line)
        self._inbox.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return b"".join(self._stderr).decode("utf-8", "replace")

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)

    def request_nowait(self, method: str, params: dict[str, Any] | None = None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return self._next_id

    def receive(self, timeout: float = RESPONSE_TIMEOUT) -> dict[str, Any] | None:
        """The next message from the server, or None when its stdout closed."""
        try:
            line = self._inbox.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message from the server in {timeout}s; stderr:\n{self.stderr}") from None
        if line is None:
            return None
        try:
            message: dict[str, Any] = json.loads(line)
        except ValueError:
            raise AssertionError(f"non-JSON line on the server's stdout (protocol stream): {line[:200]!r}") from None
        return message

    def response(self, request_id: int, timeout: float = RESPONSE_TIMEOUT) -> dict[str, Any]:
        """Wait for the response to request_id (skipping notifications and server requests)."""
        while True:
            message = self.receive(timeout)
            if message is None:
                raise AssertionError(f"server closed stdout before answering {request_id}; stderr:\n{self.stderr}")
            if message.get("id") == request_id and ("result" in message or "error" in message):
                return message

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.response(self.request_nowait(method, params))

    def handshake(self, client_name: str = "e2e-test", protocol_version: str = "2025-06-18") -> dict[str, Any]:
        reply = self.request(
            "initialize",
            {
                "protocolVersion": protocol_version,
                "capabilities": {},
                "clientInfo": {"name": client_name, "version": "1.0.0"},
            },
        )
        assert "result" in reply, reply
        self.notify("notifications/initialized")
        return reply["result"]  # type: ignore[no-any-return]

    def call_tool(self, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        reply = self.request("tools/call", {"name": name, "arguments": arguments or {}})
        assert "result" in reply, reply
        return reply["result"]  # type: ignore[no-any-return]

    def close_stdin_and_wait(self, timeout: float = 30) -> int:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the server (if still running), then reap it and its pipes."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        for pump in self._pumps:
            pump.join(timeout=30)
        kill_process(self.proc)

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
