"""The relay: what ``jetpack serve --hub`` runs for one agent.

It connects to the project's hub over a unix socket (starting the hub if none runs), tells it
who the agent is (its ``JETPACK_AGENT``, ``JETPACK_SKILLS``, client session and this process's
id, whose death ends the session) and hands it the agent's stdin and stdout themselves
(``SCM_RIGHTS``): from then on the hub reads the agent's requests and writes its answers, and
the relay only waits. No message passes through it, so it costs no CPU per call; it imports
neither the MCP SDK nor the services, so an agent waits only for Python and this module when a
hub is already up.

The hub sends the relay the session's ``initialize`` handshake once it is complete, and
``bye`` when the session ends (the agent closed stdin). If the connection ends without ``bye``
the hub has gone away: the relay starts or finds another and hands it the pipes again with the
handshake to replay, so the agent's client keeps its session and need not restart the server.
A call the old hub was answering at that moment gets no answer (clients time it out); calls not
yet read wait in the pipe; resource subscriptions do not survive; everything stored does.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jetpack.hub.address import IDENTITY_VARS, HubAddress, hub_environment

PROTOCOL = 2
_START_TIMEOUT_SECONDS = 60.0
_CONNECT_POLL_SECONDS = 0.02
# More hub losses than this within the window: something is wrong with the hub; stop.
_MAX_RESTARTS = 3
_RESTART_WINDOW_SECONDS = 60.0
_REPLAY_ID = "jetpack-relay-replay"


class HubError(Exception):
    """The hub cannot be reached or started; the message says what to do."""


def greeting(environ: Mapping[str, str], pid: int) -> dict[str, Any]:
    """What a relay tells the hub about its agent (the hub's ``read_greeting`` reads it). The
    session id is the relay's: a hub that takes the session over continues the same session."""
    identity = {name: environ[name] for name in IDENTITY_VARS if environ.get(name)}
    return {"jetpack_hub": PROTOCOL, "pid": pid, "env": identity, "session_id": uuid.uuid4().hex}


def _connect(path: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    except OSError:
        sock.close()
        raise
    return sock


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class HubLink:
    """Connects to the hub (starting one when none answers) and introduces the agent."""

    def __init__(
        self, address: HubAddress, start_argv: Sequence[str], start_env: Mapping[str, str], hello: dict[str, Any]
    ):
        self.address = address
        self._start_argv = list(start_argv)
        self._start_env = dict(start_env)
        self._hello = hello
        self.started: subprocess.Popen[bytes] | None = None

    def open(self, fds: list[int], takeover: dict[str, Any]) -> socket.socket:
        """A connection to the hub that has taken over the agent's pipes ``fds``.

        A hub that is being killed can still queue a connection on its listening socket and
        then reset it: that, or a hub that closes while greeting, is retried for a while."""
        message = json.dumps({**self._hello, **takeover}).encode() + b"\n"
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while True:
            sock = _connect(self.address.socket) or self._start()
            try:
                socket.send_fds(sock, [message], fds)
                reply = _read_line(sock)
                break
            except OSError as error:
                sock.close()
                if time.monotonic() > deadline:
                    raise HubError(
                        f"the hub keeps closing the connection while greeting it ({error}); see {self.address.log}"
                    ) from error
                time.sleep(_CONNECT_POLL_SECONDS)
        try:
            answer = json.loads(reply)
        except ValueError:
            answer = {"error": f"the hub answered the greeting with {reply[:200]!r}"}
        if not isinstance(answer, dict) or answer.get("ok") is not True:
            sock.close()
            why = answer.get("error") if isinstance(answer, dict) else answer
            raise HubError(f"the hub refused this agent: {why}")
        return sock

    def _start(self) -> socket.socket:
        """Start a hub, one relay at a time (the others wait here, then find it running)."""
        spawn_fd = os.open(self.address.spawn, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(spawn_fd, fcntl.LOCK_EX)
            sock = _connect(self.address.socket)
            if sock is not None:
                return sock
            with open(os.open(self.address.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as log:
                log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} started by relay {os.getpid()}\n".encode())
                log.flush()
                if self.started is not None:
                    self.started.poll()  # reap the hub this relay started before, if it has exited
                self.started = subprocess.Popen(
                    self._start_argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=self._start_env,
                    start_new_session=True,  # a signal to the agent's process group leaves the hub alone
                )
            deadline = time.monotonic() + _START_TIMEOUT_SECONDS
            while True:
                sock = _connect(self.address.socket)
                if sock is not None:
                    return sock
                status = self.started.poll()
                if status is not None and _connect(self.address.socket) is None:
                    raise HubError(
                        f"the hub exited with status {status} before it listened; its log "
                        f"{self.address.log} ends:\n{_log_tail(self.address.log)}"
                    )
                if time.monotonic() > deadline:
                    raise HubError(
                        f"the hub did not listen on {self.address.socket} within {_START_TIMEOUT_SECONDS:.0f} s; "
                        f"see {self.address.log}"
                    )
                time.sleep(_CONNECT_POLL_SECONDS)
        finally:
            os.close(spawn_fd)


def _read_line(sock: socket.socket) -> bytes:
    """One line, read a byte at a time: what follows it is the caller's (it is short)."""
    data = bytearray()
    while not data.endswith(b"\n") and len(data) < 65536:
        byte = sock.recv(1)
        if not byte:
            raise ConnectionResetError("closed")
        data += byte
    return bytes(data)


class Relay:
    """Hands the agent's stdio to the hub, then waits for the session's end (or the hub's)."""

    def __init__(self, link: HubLink, stdin: int = 0, stdout: int = 1) -> None:
        self._link = link
        self._fds = [stdin, stdout]
        self._handshake: list[str] = []
        self._losses: list[float] = []

    def run(self) -> int:
        hub = self._link.open(self._fds, {})
        while True:
            outcome = self._follow(hub)
            hub.close()
            if outcome == "bye":
                return 0
            hub = self._link.open(self._fds, self._takeover())

    def _follow(self, hub: socket.socket) -> str:
        """Read the hub's notes until it says bye ("bye") or the connection ends ("lost")."""
        buffer = b""
        while True:
            try:
                chunk = hub.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                return "lost"
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                note = json.loads(line)
                if note.get("failed"):
                    raise HubError(
                        f"the hub could not serve this session: {note['failed']}; see {self._link.address.log}"
                    )
                if note.get("bye"):
                    return "bye"
                if isinstance(note.get("handshake"), list):
                    self._handshake = [str(x) for x in note["handshake"]]

    def _takeover(self) -> dict[str, Any]:
        now = time.monotonic()
        self._losses = [t for t in self._losses if now - t < _RESTART_WINDOW_SECONDS] + [now]
        if len(self._losses) > _MAX_RESTARTS:
            raise HubError(
                f"the hub stopped {len(self._losses)} times within {_RESTART_WINDOW_SECONDS:.0f} s; "
                f"see {self._link.address.log}"
            )
        print(
            f"jetpack: the hub went away; handing this session to another ({self._link.address.log})", file=sys.stderr
        )
        if not self._handshake:
            return {}
        replay, drop_id = [], None
        for line in self._handshake:
            message = json.loads(line)
            if "id" in message:
                drop_id = message["id"] = f"{_REPLAY_ID}-{os.getpid()}-{len(self._losses)}"
            replay.append(json.dumps(message, separators=(",", ":")))
        return {"replay": replay, "drop_id": drop_id}


def can_hand_over(fd: int) -> bool:
    """Whether another process can serve this descriptor as a stream (a pipe, socket or terminal;
    not a regular file)."""
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


def relay_stdio(address: HubAddress, start_argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """Serve this process's stdio through the hub at ``address``; the exit status."""
    link = HubLink(address, start_argv, hub_environment(environ), greeting(environ, os.getpid()))
    try:
        return Relay(link).run()
    except HubError as error:
        print(f"jetpack serve --hub: {error}", file=sys.stderr)
        return 1
