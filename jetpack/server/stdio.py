"""The stdio transport: asyncio pipes, and a direct path for tool calls.

Two costs dominate a tool call through the SDK's own stdio stack, both measured here: anyio's
thread-backed file wrappers (a thread hop per line read, per write, per flush: ~1 ms per call,
3× our cost) and the request pipeline around the handler (dispatcher, memory streams, a task
per request, middleware, tracing: ~0.3 ms per call, more than the SQLite work of a claim).

This transport reads and writes the pipes from the event loop and hands every message to the
SDK's ``stdio_server`` as usual — except ``tools/call`` requests of a handshake-era session for
the tools in ``DIRECT_TOOLS``, which it answers itself by calling the SDK's own ``Tool.run``
(same argument validation, same result conversion, same error text) with the session's
context. Everything else — initialize, lists, resources, other eras — is the SDK's.

Like the SDK, it claims the standard descriptors: the protocol moves to private duplicates,
fd 0 reads /dev/null and fd 1 goes to stderr, so a stray ``print`` cannot corrupt the wire.
When stdin or stdout is not a pipe (a file, a terminal), it falls back to the SDK transport.
Set ``JETPACK_STDIO_DIRECT=0`` to send every call through the SDK pipeline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.runner import serve_dual_era_loop
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, TextContent
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION
from pydantic import ValidationError

from jetpack.server.session import AgentSession
from jetpack.tools import DIRECT_TOOLS

log = logging.getLogger(__name__)

_MAX_LINE = 64 * 1024 * 1024


@dataclass
class _ClientInfo:
    name: str | None


@dataclass
class _ClientParams:
    client_info: _ClientInfo


@dataclass
class _Connection:
    client_params: _ClientParams


@dataclass
class _RequestContext:
    lifespan_context: AgentSession
    meta: dict[str, Any] | None


@dataclass
class DirectContext:
    """The part of the SDK's ``Context`` that the tools in DIRECT_TOOLS use."""

    request_context: _RequestContext
    session: _Connection


class _DirectCalls:
    """Answers handshake-era ``tools/call`` requests for DIRECT_TOOLS without the SDK pipeline."""

    def __init__(self, mcp: MCPServer, session: AgentSession, send: Callable[[bytes], None]) -> None:
        self._mcp = mcp
        self._session = session
        self._send = send
        self._seen_first = False
        self._handshake = False
        self._active = False
        self._client_name: str | None = None
        self._version = LATEST_HANDSHAKE_VERSION

    def wants(self, line: bytes) -> dict[str, Any] | None:
        """The parsed request if this path answers it; None to hand the line to the SDK."""
        if not self._active:
            self._observe(line)
            return None
        if b'"tools/call"' not in line:
            return None
        try:
            message = json.loads(line)
        except ValueError:
            return None
        params = message.get("params") if isinstance(message, dict) else None
        if (
            message.get("method") != "tools/call"
            or "id" not in message
            or not isinstance(params, dict)
            or params.get("name") not in DIRECT_TOOLS
            or not isinstance(params.get("arguments", {}), dict)
            or not isinstance(params.get("_meta", {}), dict)
        ):
            return None
        return cast(dict[str, Any], message)

    def _observe(self, line: bytes) -> None:
        """Follow the handshake: direct answers start once an initialize-era client is initialized."""
        if self._seen_first and not self._handshake:
            return
        try:
            message = json.loads(line)
        except ValueError:
            return
        method = message.get("method") if isinstance(message, dict) else None
        if not self._seen_first and method is not None:
            self._seen_first = True
            self._handshake = method == "initialize"
            if self._handshake:
                params = message.get("params") or {}
                info = params.get("clientInfo") or {}
                self._client_name = info.get("name") if isinstance(info, dict) else None
                requested = params.get("protocolVersion")
                # The version the SDK negotiates (it answers this initialize itself).
                self._version = requested if requested in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION
        elif method == "notifications/initialized" and self._handshake:
            self._active = True
            log.info("answering tool calls of this %s session directly", self._version)

    async def answer(self, message: dict[str, Any]) -> None:
        params = message["params"]
        name = params["name"]
        tool = self._mcp._tool_manager.get_tool(name)
        if tool is None:  # pragma: no cover - DIRECT_TOOLS names registered tools
            raise RuntimeError(f"direct tool {name!r} is not registered")
        context = DirectContext(
            _RequestContext(self._session, params.get("_meta")),
            _Connection(_ClientParams(_ClientInfo(self._client_name))),
        )
        try:
            # Our tools build their CallToolResult from their output model already; the SDK's second
            # validation of it against that model is left to the SDK pipeline (and the test suite).
            result = await tool.run(params.get("arguments") or {}, cast(Any, context))
            if not isinstance(result, CallToolResult):  # pragma: no cover - every direct tool builds one
                result = tool.fn_metadata.convert_result(result)
        except MCPError as error:
            self._reply(message["id"], {"error": error.error.model_dump(by_alias=True, mode="json", exclude_none=True)})
            return
        except Exception as error:  # the same outcome as the SDK's call_tool handler
            _log_tool_failure(name, error)
            result = CallToolResult(content=[TextContent(type="text", text=str(error))], is_error=True)
        # What the SDK's per-version sieve yields for a handshake-era CallToolResult (the parity
        # test compares the two): the dump without the 2026-only resultType.
        plain = _plain_dump(result)
        try:
            if plain is None:
                raise TypeError("not a plain result")
            self._reply(message["id"], {"result": plain})
        except TypeError:  # another shape, or structured content json cannot encode as it is
            dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True, exclude={"result_type"})
            self._reply(message["id"], {"result": dumped})

    def _reply(self, request_id: Any, body: dict[str, Any]) -> None:
        payload = {"jsonrpc": "2.0", "id": request_id, **body}
        self._send(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode() + b"\n")


def _plain_dump(result: CallToolResult) -> dict[str, Any] | None:
    """What ``model_dump`` yields for the results our tools build (text content, JSON-ready
    structured content, no metadata), without its cost; None for any other shape. A test holds
    the two equal."""
    if type(result) is not CallToolResult or result.meta is not None:
        return None
    content = []
    for item in result.content:
        if type(item) is not TextContent or item.annotations is not None or item.meta is not None:
            return None
        content.append({"type": "text", "text": item.text})
    dumped: dict[str, Any] = {"content": content}
    if result.structured_content is not None:
        dumped["structuredContent"] = result.structured_content
    dumped["isError"] = result.is_error
    return dumped


def _log_tool_failure(name: str, error: Exception) -> None:
    if isinstance(error, ToolError) and not isinstance(error, UnexpectedToolError):
        if isinstance(error.__cause__, ValidationError):
            fields = sorted({".".join(str(p) for p in e["loc"]) for e in error.__cause__.errors()})
            log.info("Tool %r rejected arguments: %r", name, fields)
        else:
            log.info("Tool %r failed: %r", name, str(error))
    else:
        log.error("Tool %r raised an unexpected exception", name, exc_info=error)


class Handshake:
    """Records the lines of a session's ``initialize`` handshake (the request and the client's
    ``notifications/initialized``), so that a hub that takes the session over can replay them."""

    def __init__(self, on_complete: Callable[[list[bytes]], None]) -> None:
        self._on_complete = on_complete
        self.lines: list[bytes] = []
        self.done = False

    def see(self, line: bytes) -> None:
        if b'"initialize"' not in line and b"notifications/initialized" not in line:
            return
        try:
            method = json.loads(line).get("method")
        except (ValueError, AttributeError):
            return
        if method == "initialize" and not self.lines:
            self.lines.append(line.rstrip(b"\n"))
        elif method == "notifications/initialized" and self.lines:
            self.lines.append(line.rstrip(b"\n"))
            self.done = True
            self._on_complete(self.lines)


class _PipeLines:
    """Lines for the SDK's reader (first any ``replay``); tool calls the direct path answers never
    reach it."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        direct: _DirectCalls | None,
        replay: list[bytes] | None = None,
        handshake: Handshake | None = None,
    ) -> None:
        self._reader = reader
        self._direct = direct
        self._replay = list(replay or ())
        self._handshake = handshake

    def __aiter__(self) -> _PipeLines:
        return self

    async def __anext__(self) -> str:
        while True:
            line = self._replay.pop(0) + b"\n" if self._replay else await self._reader.readline()
            if not line:
                raise StopAsyncIteration
            if self._handshake is not None and not self._handshake.done:
                self._handshake.see(line)
            message = self._direct.wants(line) if self._direct is not None else None
            if message is None:
                return line.decode("utf-8", "replace")
            await self._direct.answer(message)  # type: ignore[union-attr]


class _PipeWriter:
    """The SDK's writer; drops the one answer that carries ``drop`` (a replayed request's id)."""

    def __init__(self, writer: asyncio.StreamWriter, drop: str | None = None) -> None:
        self._writer = writer
        self._drop = drop

    async def write(self, text: str) -> None:
        if self._drop is not None and self._drop in text:
            self._drop = None
            return
        self._writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self._writer.drain()


def _is_pipe_or_socket(fd: int) -> bool:
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


@dataclass
class Takeover:
    """What a hub needs to continue a session another hub began: the handshake to replay, and
    the id the replayed ``initialize`` carries (its answer is not the client's to see)."""

    replay: list[bytes]
    drop_id: str | None


@asynccontextmanager
async def _fd_streams(
    mcp: MCPServer,
    session: AgentSession,
    fd_in: int,
    fd_out: int,
    *,
    takeover: Takeover | None = None,
    handshake: Handshake | None = None,
) -> AsyncIterator[tuple[Any, Any]]:
    """The SDK's streams over a pipe pair (which these streams own and close)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_MAX_LINE)
    read_transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd_in, "rb", buffering=0)
    )
    try:
        write_transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(fd_out, "wb", buffering=0)
        )
    except BaseException:
        read_transport.close()
        raise
    writer = asyncio.StreamWriter(write_transport, protocol, None, loop)
    direct = None if os.environ.get("JETPACK_STDIO_DIRECT") == "0" else _DirectCalls(mcp, session, writer.write)
    lines = _PipeLines(reader, direct, takeover.replay if takeover else None, handshake)
    try:
        async with stdio_server(lines, _PipeWriter(writer, takeover.drop_id if takeover else None)) as streams:  # type: ignore[arg-type]
            yield streams
    finally:
        read_transport.close()
        write_transport.close()


@asynccontextmanager
async def _pipe_streams(mcp: MCPServer, session: AgentSession) -> AsyncIterator[tuple[Any, Any]]:
    wire_in, wire_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    async with _fd_streams(mcp, session, wire_in, wire_out) as streams:
        yield streams


async def serve_pipes(
    mcp: MCPServer,
    session: AgentSession,
    fd_in: int,
    fd_out: int,
    *,
    takeover: Takeover | None = None,
    handshake: Handshake | None = None,
) -> None:
    """Serve one agent's session over its own pipes in a process that has entered the server's
    lifespan already (the hub: many of these at once, one lifespan). Closes the pipes."""
    lowlevel = mcp._lowlevel_server
    streams = _fd_streams(mcp, session, fd_in, fd_out, takeover=takeover, handshake=handshake)
    async with streams as (read_stream, write_stream):
        await serve_dual_era_loop(
            lowlevel,
            read_stream,
            write_stream,
            lifespan_state=session,
            init_options=lowlevel.create_initialization_options(),
        )


async def serve_stdio(mcp: MCPServer, session: AgentSession) -> None:
    """Serve ``mcp`` over this process's stdin/stdout; ``session`` is the one its lifespan yields."""
    lowlevel = mcp._lowlevel_server
    piped = _is_pipe_or_socket(0) and _is_pipe_or_socket(1)
    streams = _pipe_streams(mcp, session) if piped else stdio_server()
    async with streams as (read_stream, write_stream):
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
