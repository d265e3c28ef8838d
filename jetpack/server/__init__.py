"""The MCP server: application wiring, per-session agent identity, transports."""

from jetpack.server.app import ServerParts, build_parts, create_server
from jetpack.server.session import AgentSession, IdentityDefaults

__all__ = ["AgentSession", "IdentityDefaults", "ServerParts", "build_parts", "create_server"]
