"""`jetpack serve --hub`: real relays (what agents launch) sharing one real hub process.

Every agent here is a `python -m jetpack serve` over stdio with JETPACK_HUB=1; the hub is the
process the first relay starts. Hubs of these tests stop one second after their last agent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import RawServer, db_path, open_db, server_env, write_config

from jetpack.config import load_settings
from jetpack.hub.address import HubAddress, HubRecord, hub_address, running_hub_pid
from jetpack.processes import process_alive

WAIT_SECONDS = 30.0


def _wait_for(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _address(project: Path) -> HubAddress:
    return hub_address(load_settings({"JETPACK_PROJECT_DIR": str(project)}), {"JETPACK_PROJECT_DIR": str(project)})


def _agent_row(project: Path, name: str) -> dict[str, Any]:
    with open_db(db_path(project)) as conn:
        conn.row_factory = lambda cursor, row: {d[0]: v for d, v in zip(cursor.description, row, strict=True)}
        row = conn.execute("SELECT * FROM agents WHERE name = ?", (name,)).fetchone()
    assert row is not None, f"agent {name} is not registered"
    return dict(row)


def _structured(result: dict[str, Any]) -> dict[str, Any]:
    assert not result.get("isError"), result
    return dict(result["structuredContent"])


@pytest.fixture
def hub_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # Sockets, locks and logs of this test's hubs in a directory of its own (short: a socket's
    # path has ~100 bytes), removed afterwards.
    runtime = Path(tempfile.mkdtemp(prefix="jp", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    write_config(project, "[server]\nhub_idle_seconds = 1\n")
    yield project
    for lock in runtime.glob("*/*.lock"):
        record = HubRecord.read(lock)
        if record is not None and process_alive(record.pid):  # a failed test must not leave its hub behind
            os.kill(record.pid, signal.SIGKILL)
    shutil.rmtree(runtime, ignore_errors=True)


def _agent(project: Path, name: str, **env: str) -> RawServer:
    runtime = os.environ["XDG_RUNTIME_DIR"]
    return RawServer(project, JETPACK_HUB="1", JETPACK_AGENT=name, XDG_RUNTIME_DIR=runtime, **env)


def test_agents_share_one_hub_and_keep_their_own_identity(hub_project: Path) -> None:
    with _agent(hub_project, "alpha") as alpha, _agent(hub_project, "beta") as beta:
        alpha.handshake()
        beta.handshake()
        created = _structured(alpha.call_tool("create_tasks", {"tasks": [{"title": "shared work"}]}))
        task_id = created["created"][0]["id"]
        claimed = _structured(beta.call_tool("claim_task", {}))
        assert claimed["id"] == task_id and claimed["assignee"] == "beta"
        _structured(beta.call_tool("send_mail", {"to": ["alpha"], "subject": "took it", "body": "mine"}))
        inbox = _structured(alpha.call_tool("fetch_inbox", {}))
        assert [(m["sender"], m["subject"]) for m in inbox["messages"]] == [("beta", "took it")]

        hub = running_hub_pid(_address(hub_project))
        assert hub is not None and hub not in (alpha.proc.pid, beta.proc.pid)
        # Each session records its relay, the process whose death ends it, not the shared hub.
        assert _agent_row(hub_project, "alpha")["pid"] == alpha.proc.pid
        assert _agent_row(hub_project, "beta")["pid"] == beta.proc.pid
        # The relays passed their pipes on: the hub is the only server process.
        assert "--as-hub" in Path(f"/proc/{hub}/cmdline").read_bytes().decode().replace("\0", " ")


def test_closing_stdin_ends_the_session_the_relay_and_then_the_idle_hub(hub_project: Path) -> None:
    address = _address(hub_project)
    with _agent(hub_project, "alpha") as alpha:
        alpha.handshake()
        _structured(alpha.call_tool("list_tasks", {}))
        hub = running_hub_pid(address)
        assert hub is not None
        assert alpha.close_stdin_and_wait() == 0
        assert _agent_row(hub_project, "alpha")["ended_at"] is not None
    _wait_for("the idle hub to stop", lambda: not process_alive(hub))
    assert not address.socket.exists()


def test_a_killed_relay_ends_its_session_while_the_hub_serves_the_others(hub_project: Path) -> None:
    with _agent(hub_project, "alpha") as alpha, _agent(hub_project, "beta") as beta:
        alpha.handshake()
        beta.handshake()
        _structured(alpha.call_tool("list_tasks", {}))
        _structured(beta.call_tool("list_tasks", {}))
        alpha.kill()
        _wait_for("the hub to end the killed relay's session", lambda: _agent_row(hub_project, "alpha")["ended_at"])
        assert _agent_row(hub_project, "beta")["ended_at"] is None
        assert _structured(beta.call_tool("list_tasks", {}))["tasks"] == []


def test_a_killed_hub_hands_every_session_to_a_new_one(hub_project: Path) -> None:
    address = _address(hub_project)
    with _agent(hub_project, "alpha") as alpha, _agent(hub_project, "beta") as beta:
        alpha.handshake()
        beta.handshake()
        _structured(alpha.call_tool("create_tasks", {"tasks": [{"title": "before"}]}))
        first = running_hub_pid(address)
        assert first is not None
        os.kill(first, signal.SIGKILL)
        _wait_for("the old hub to die", lambda: not process_alive(first))
        # No new handshake: the relays replay theirs to the hub they start, and the calls go on.
        titles = [t["title"] for t in _structured(beta.call_tool("list_tasks", {}))["tasks"]]
        assert titles == ["before"]
        _structured(alpha.call_tool("send_mail", {"to": ["beta"], "subject": "still here", "body": "."}))
        assert [m["subject"] for m in _structured(beta.call_tool("fetch_inbox", {}))["messages"]] == ["still here"]
        second = running_hub_pid(address)
        assert second is not None and second != first
        # The replayed initialize was answered to the relay's replay, never to the client.
        for server in (alpha, beta):
            answers = [json.loads(line) for line in server.lines]
            assert [a["id"] for a in answers if a.get("id") is not None and "protocolVersion" in str(a)] == [1]


def test_an_invalid_agent_name_is_refused_with_a_clear_error(hub_project: Path) -> None:
    with _agent(hub_project, "not a name!") as bad:
        assert bad.close_stdin_and_wait() == 1
        assert "agent name" in bad.stderr and "refused" in bad.stderr


def test_agents_with_other_settings_get_their_own_hub(hub_project: Path) -> None:
    with _agent(hub_project, "alpha") as alpha, _agent(hub_project, "beta", JETPACK_LOG_LEVEL="info") as beta:
        alpha.handshake()
        beta.handshake()
        _structured(alpha.call_tool("create_tasks", {"tasks": [{"title": "one database"}]}))
        assert [t["title"] for t in _structured(beta.call_tool("list_tasks", {}))["tasks"]] == ["one database"]
        settings = load_settings({"JETPACK_PROJECT_DIR": str(hub_project)})
        plain = hub_address(settings, {"JETPACK_PROJECT_DIR": str(hub_project)})
        chatty = hub_address(settings, {"JETPACK_PROJECT_DIR": str(hub_project), "JETPACK_LOG_LEVEL": "info"})
        assert plain.key != chatty.key
        hubs = {running_hub_pid(plain), running_hub_pid(chatty)}
        assert None not in hubs and len(hubs) == 2
        for pid in hubs:
            assert pid is not None
            os.kill(pid, signal.SIGKILL)


def test_hub_status_lists_the_hub_and_restart_moves_the_agents_to_a_new_one(hub_project: Path) -> None:
    def hub_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "jetpack", "hub", *args],
            check=False,
            env=server_env(hub_project, XDG_RUNTIME_DIR=os.environ["XDG_RUNTIME_DIR"]),
            cwd=str(hub_project),
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert "no hub is running" in hub_cli("status").stdout
    with _agent(hub_project, "alpha") as alpha:
        alpha.handshake()
        _structured(alpha.call_tool("create_tasks", {"tasks": [{"title": "kept"}]}))
        listed = json.loads(hub_cli("status", "--json").stdout)["hubs"]
        first = running_hub_pid(_address(hub_project))
        assert [h["pid"] for h in listed] == [first]
        assert listed[0]["database"] == str(db_path(hub_project)) and listed[0]["log"].endswith(".log")

        restarted = hub_cli("restart")
        assert restarted.returncode == 0 and "stopped 1 hub" in restarted.stdout, restarted.stderr
        assert [t["title"] for t in _structured(alpha.call_tool("list_tasks", {}))["tasks"]] == ["kept"]
        second = running_hub_pid(_address(hub_project))
        assert second not in (None, first)
        # The session moved with its relay: it was not ended on the way.
        assert _agent_row(hub_project, "alpha")["ended_at"] is None


def test_with_stdio_on_files_the_agent_is_served_in_its_own_process(hub_project: Path, tmp_path: Path) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        "\n".join(
            json.dumps(m)
            for m in (
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t"}},
                },
                {"jsonrpc": "2.0", "method": "notifications/initialized"},
                {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_tasks", "arguments": {}}},
            )
        )
        + "\n"
    )
    answers = tmp_path / "answers.jsonl"
    with requests.open("rb") as stdin, answers.open("wb") as stdout:
        done = subprocess.run(
            [sys.executable, "-m", "jetpack", "serve", "--hub"],
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=server_env(hub_project, JETPACK_AGENT="filed", XDG_RUNTIME_DIR=os.environ["XDG_RUNTIME_DIR"]),
            cwd=str(hub_project),
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert "serving here" in done.stderr
    ids = [json.loads(line).get("id") for line in answers.read_text().splitlines()]
    assert sorted(ids) == [1, 2]
    assert running_hub_pid(_address(hub_project)) is None  # no hub was started for it


def test_an_inbox_subscriber_in_the_hub_is_told_when_mail_arrives(hub_project: Path) -> None:
    with _agent(hub_project, "alpha") as alpha, _agent(hub_project, "beta") as beta:
        alpha.handshake()
        beta.handshake()
        _structured(alpha.call_tool("list_tasks", {}))  # registers alpha, so beta can mail it
        assert "result" in alpha.request("resources/subscribe", {"uri": "jetpack://inbox/alpha"})
        _structured(beta.call_tool("send_mail", {"to": ["alpha"], "subject": "ping", "body": "."}))
        while True:  # only the subscriber's session is told (receive fails the test after its timeout)
            message = alpha.receive()
            assert message is not None, alpha.stderr
            if message.get("method") == "notifications/resources/updated":
                assert message["params"]["uri"] == "jetpack://inbox/alpha"
                break
        assert not [json.loads(line) for line in beta.lines if b"resources/updated" in line]
