"""The hub: one server process for every stdio agent of a project (``jetpack serve --hub``).

Without it each agent's ``jetpack serve`` is a whole server: its own interpreter, its own SQLite
connection, its own sweeper. That is the simplest thing that works, but with dozens of agents on a
small machine the servers are most of the load: each one's page cache is emptied whenever another
process writes, writers queue on a file lock across processes, and every call wakes a process whose
memory is cold. The hub serves all of them from one process, one connection and warm caches; what
an agent launches is a relay (``jetpack.hub.relay``) that moves its stdio to the hub.

Each relay hands the hub its agent's stdin and stdout (``SCM_RIGHTS``), so the hub reads and
writes the agent's pipes itself: one MCP session per relay, with its own agent identity (from the
relay's greeting) and the same direct path for hot tool calls as stdio. The relay's connection
stays open for the session's life: the hub tells the relay the handshake (to replay to another hub
if this one dies) and ``bye`` at the end; the relay's death ends the session. The hub runs the
server's lifespan (sweeper, inbox watcher, checkpoints) once, and stops after
``server.hub_idle_seconds`` without connections.
One hub per key (see ``jetpack.hub.address``) at a time: it holds ``<key>.lock`` while it lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
import signal
import socket
import time
from dataclasses import dataclass

from mcp.server.mcpserver import MCPServer

from jetpack.hub.address import HubAddress, HubRecord
from jetpack.hub.relay import PROTOCOL
from jetpack.server.app import ServerParts, new_session
from jetpack.server.connections import close_session
from jetpack.server.session import IdentityDefaults
from jetpack.server.stdio import Handshake, Takeover, serve_pipes

log = logging.getLogger(__name__)

_LOCK_WAIT_SECONDS = 30.0  # a hub on its way out still holds the lock while it closes
_GREETING_SECONDS = 10.0
_GREETING_MAX = 1024 * 1024
_SESSION_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Greeting:
    identity: IdentityDefaults
    session_id: str
    takeover: Takeover | None


def read_greeting(line: bytes) -> Greeting:
    """The agent a relay speaks for, from its greeting line; ValueError when it is not one."""
    message = json.loads(line)
    if not isinstance(message, dict) or message.get("jetpack_hub") != PROTOCOL:
        raise ValueError(f"not a Jetpack relay greeting (protocol {PROTOCOL}): {line[:120]!r}")
    env, pid = message.get("env"), message.get("pid")
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()) or not isinstance(pid, int):
        raise ValueError("a relay greeting needs env (strings) and pid (an integer)")
    session_id = message.get("session_id")
    if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
        raise ValueError("a relay greeting needs session_id (32 hex digits)")
    replay = message.get("replay")
    takeover = None
    if replay is not None:
        if not isinstance(replay, list) or not all(isinstance(x, str) for x in replay):
            raise ValueError("a relay greeting's replay must be a list of JSON-RPC lines")
        drop_id = message.get("drop_id")
        takeover = Takeover([x.encode() for x in replay], drop_id if isinstance(drop_id, str) else None)
    return Greeting(IdentityDefaults.from_environ(env, pid=pid), session_id, takeover)


def _receive_greeting(conn: socket.socket) -> tuple[bytes, list[int]]:
    """The greeting line and the two descriptors that came with it (blocking; run off the loop)."""
    conn.settimeout(_GREETING_SECONDS)
    data, fds, _, _ = socket.recv_fds(conn, _GREETING_MAX, 2)
    while not data.endswith(b"\n"):
        more = conn.recv(65536)
        if not more or len(data) > _GREETING_MAX:
            for fd in fds:
                os.close(fd)
            raise ValueError("the relay's greeting ended early")
        data += more
    if len(fds) != 2:
        for fd in fds:
            os.close(fd)
        raise ValueError(f"a relay sends its stdin and stdout with its greeting; got {len(fds)} descriptors")
    return data, fds


class Hub:
    def __init__(self, parts: ServerParts, mcp: MCPServer, address: HubAddress, idle_seconds: float) -> None:
        self._parts = parts
        self._mcp = mcp
        self._address = address
        self._idle_seconds = idle_seconds
        self._sessions: set[asyncio.Task[None]] = set()
        self._idle_since = time.monotonic()
        self._stop = asyncio.Event()

    async def serve(self) -> None:
        lowlevel = self._mcp._lowlevel_server
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        async with lowlevel.lifespan(lowlevel):  # the sweeper, the inbox watcher: once for everyone
            listener = self._listen()
            accepting = asyncio.create_task(self._accept_forever(listener))
            log.info("hub %s listening on %s (pid %d)", self._address.key, self._address.socket, os.getpid())
            try:
                await self._until_idle_or_stopped()
            finally:
                accepting.cancel()
                listener.close()
                with contextlib.suppress(FileNotFoundError):
                    self._address.socket.unlink()
                if self._stop.is_set():  # relays hand their sessions to the next hub
                    for task in list(self._sessions):
                        task.cancel()
                # Relays that connected just before the listener closed are served to their end.
                while self._sessions:
                    await asyncio.sleep(0.05)
        log.info("hub %s stopped", self._address.key)

    def _listen(self) -> socket.socket:
        with contextlib.suppress(FileNotFoundError):
            self._address.socket.unlink()  # a hub that died without removing it
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self._address.socket))
        os.chmod(self._address.socket, 0o600)
        listener.listen(256)
        listener.setblocking(False)
        return listener

    async def _accept_forever(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(listener)
            task = asyncio.create_task(self._serve_relay(conn))
            self._sessions.add(task)
            task.add_done_callback(self._session_over)

    def _session_over(self, task: asyncio.Task[None]) -> None:
        self._sessions.discard(task)
        self._idle_since = time.monotonic()
        if not task.cancelled() and task.exception() is not None:
            log.error("a relay's session failed", exc_info=task.exception())

    async def _until_idle_or_stopped(self) -> None:
        tick = min(1.0, self._idle_seconds / 4)
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), tick)
            if not self._sessions and time.monotonic() - self._idle_since >= self._idle_seconds:
                log.info("no agents for %.0f s; stopping", self._idle_seconds)
                return

    async def _serve_relay(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            line, fds = await loop.run_in_executor(None, _receive_greeting, conn)
        except (OSError, ValueError) as error:
            log.warning("a relay's greeting failed: %s", error)
            conn.close()
            return
        conn.setblocking(False)
        reader, writer = await asyncio.open_unix_connection(sock=conn)
        try:
            try:
                greeting = read_greeting(line)
            except Exception as error:  # a malformed greeting, an invalid JETPACK_AGENT / JETPACK_SKILLS
                for fd in fds:
                    os.close(fd)
                writer.write(json.dumps({"error": str(error)}).encode() + b"\n")
                await writer.drain()
                return
            writer.write(b'{"ok":true}\n')
            await self._serve_session(greeting, fds, reader, writer)
        finally:
            writer.close()

    async def _serve_session(
        self, greeting: Greeting, fds: list[int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        def tell_handshake(lines: list[bytes]) -> None:
            note = {"handshake": [x.decode("utf-8", "replace") for x in lines]}
            writer.write(json.dumps(note).encode() + b"\n")

        identity = greeting.identity
        session = new_session(self._parts, defaults=identity, session_id=greeting.session_id)
        handshake = None if greeting.takeover else Handshake(tell_handshake)
        log.info("relay %d connected (agent %s)", identity.pid or 0, identity.name or "to be named")
        serving = asyncio.create_task(
            serve_pipes(self._mcp, session, fds[0], fds[1], takeover=greeting.takeover, handshake=handshake)
        )
        relay_gone = asyncio.create_task(reader.read())  # the relay never writes: this is its end
        try:
            await asyncio.wait({serving, relay_gone}, return_when=asyncio.FIRST_COMPLETED)
            if serving.done():
                failure = None if serving.cancelled() else serving.exception()
                # A session that failed ends its relay with the reason: the next hub would fail it too.
                note = {"bye": True} if failure is None else {"failed": f"{type(failure).__name__}: {failure}"}
                writer.write(json.dumps(note).encode() + b"\n")
                with contextlib.suppress(OSError):
                    await writer.drain()
                if failure is not None:
                    raise failure  # logged by the caller
        finally:
            for task in (serving, relay_gone):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await serving
            if not self._stop.is_set():  # else the session moves to the next hub with its relay
                close_session(session)


def run_hub(parts: ServerParts, mcp: MCPServer, address: HubAddress, idle_seconds: float) -> int:
    """Serve relays until idle; the exit status (0 also when another hub already serves the key)."""
    import anyio

    lock_fd = os.open(address.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if not _take_lock(lock_fd):
            log.warning("another hub holds %s; leaving it to serve", address.lock)
            return 0
        record = HubRecord(os.getpid(), address.key, str(parts.settings.project_dir), parts.store.location, time.time())
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, record.to_line(), 0)  # who the hub is: `jetpack hub status`, benchmarks, tests
        hub = Hub(parts, mcp, address, idle_seconds)
        anyio.run(hub.serve)
        return 0
    finally:
        os.close(lock_fd)


def _take_lock(fd: int) -> bool:
    deadline = time.monotonic() + _LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
