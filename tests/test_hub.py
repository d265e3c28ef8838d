"""The hub's pieces without processes: which agents share a hub, the greeting, the handshake."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from jetpack.config import load_settings
from jetpack.errors import ConfigError
from jetpack.hub.address import hub_environment, hub_key, runtime_dir
from jetpack.hub.relay import PROTOCOL, HubError, HubLink, Relay, greeting
from jetpack.hub.server import read_greeting
from jetpack.server.stdio import Handshake

INIT = b'{"jsonrpc":"2.0","id":7,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}'
INITIALIZED = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'


def _settings(project: Path, config: str = "") -> object:
    (project / ".jetpack").mkdir(exist_ok=True)
    (project / ".jetpack" / "config.toml").write_text(config)
    return load_settings({"JETPACK_PROJECT_DIR": str(project)})


def test_agents_differing_only_in_identity_share_a_hub(project: Path) -> None:
    settings = _settings(project)
    base = {"JETPACK_PROJECT_DIR": str(project), "PATH": "/bin"}
    key = hub_key(settings, base)  # type: ignore[arg-type]
    for same in (
        {"JETPACK_AGENT": "alpha", "JETPACK_SKILLS": "python", "CLAUDE_CODE_SESSION_ID": "s1"},
        {"JETPACK_HUB": "1"},
        {"HOME": "/elsewhere"},  # only JETPACK_* shapes a server
    ):
        assert hub_key(settings, {**base, **same}) == key, same  # type: ignore[arg-type]
    assert hub_key(settings, {**base, "JETPACK_LOG_LEVEL": "info"}) != key  # type: ignore[arg-type]
    other = _settings(project, "[tasks]\nlease_seconds = 60\n")
    assert hub_key(other, base) != key  # type: ignore[arg-type]


def test_the_hub_runs_with_the_agents_environment_less_its_identity() -> None:
    env = {"JETPACK_AGENT": "alpha", "JETPACK_SKILLS": "go", "CLAUDE_CODE_SESSION_ID": "x", "JETPACK_DB": "d", "A": "b"}
    assert hub_environment(env) == {"JETPACK_DB": "d", "A": "b"}


def test_the_runtime_directory_must_be_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    folder = runtime_dir()
    assert folder == tmp_path / f"jetpack-{os.getuid()}" and (folder.stat().st_mode & 0o777) == 0o700
    folder.chmod(0o755)
    with pytest.raises(ConfigError, match="not a private directory"):
        runtime_dir()


def test_a_greeting_names_the_agent_its_process_and_its_session() -> None:
    sent = greeting({"JETPACK_AGENT": "alpha", "JETPACK_SKILLS": "py, go", "HOME": "/root"}, 4242)
    assert sent["env"] == {"JETPACK_AGENT": "alpha", "JETPACK_SKILLS": "py, go"}
    received = read_greeting(json.dumps(sent).encode())
    assert received.identity.name == "alpha" and received.identity.pid == 4242
    assert set(received.identity.skills) == {"py", "go"}
    assert received.session_id == sent["session_id"] and received.takeover is None
    resumed = read_greeting(json.dumps({**sent, "replay": [INIT.decode()], "drop_id": "r-1"}).encode())
    assert resumed.takeover is not None
    assert resumed.takeover.replay == [INIT] and resumed.takeover.drop_id == "r-1"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"jetpack_hub": PROTOCOL + 1}, "not a Jetpack relay greeting"),
        ({"pid": "12"}, "pid"),
        ({"env": {"JETPACK_AGENT": 3}}, "env"),
        ({"session_id": "../etc"}, "session_id"),
        ({"replay": "initialize"}, "replay"),
        ({"env": {"JETPACK_AGENT": "not a name!"}}, "agent name"),
    ],
)
def test_a_malformed_greeting_is_refused_with_the_reason(change: dict[str, object], error: str) -> None:
    sent = {**greeting({"JETPACK_AGENT": "alpha"}, 1), **change}
    with pytest.raises(Exception, match=error):
        read_greeting(json.dumps(sent).encode())


def test_the_handshake_is_recorded_once_complete() -> None:
    completed: list[list[bytes]] = []
    handshake = Handshake(completed.append)
    handshake.see(INITIALIZED + b"\n")  # out of order: not a handshake yet
    handshake.see(INIT + b"\n")
    handshake.see(b'{"jsonrpc":"2.0","id":8,"method":"tools/list"}\n')
    assert completed == [] and not handshake.done
    handshake.see(INITIALIZED + b"\n")
    assert completed == [[INIT, INITIALIZED]] and handshake.done


def test_a_takeover_replays_the_handshake_under_an_id_the_client_never_sees(tmp_path: Path) -> None:
    from jetpack.hub.address import HubAddress

    address = HubAddress("k", tmp_path / "s", tmp_path / "l", tmp_path / "p", tmp_path / "log")
    relay = Relay(HubLink(address, [], {}, {}))
    assert relay._takeover() == {}  # nothing to replay before the handshake
    relay._handshake = [INIT.decode(), INITIALIZED.decode()]
    takeover = relay._takeover()
    init, initialized = (json.loads(line) for line in takeover["replay"])
    assert init["id"] == takeover["drop_id"] != 7 and init["params"] == {"protocolVersion": "2025-06-18"}
    assert initialized == json.loads(INITIALIZED)
    relay._takeover()
    with pytest.raises(HubError, match="stopped 4 times"):  # a hub that keeps dying is reported
        relay._takeover()
