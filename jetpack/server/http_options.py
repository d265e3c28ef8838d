"""Where ``jetpack serve --http`` listens and who may reach it: the ``[server]`` settings with the
command line on top, when tokens are required, and the Host/Origin checks that follow from the
names the server is reached by."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mcp.server.transport_security import TransportSecuritySettings

from jetpack import __version__
from jetpack.config import ServerSettings

MCP_PATH = "/mcp"
SSE_PATH = "/sse"
SSE_MESSAGES_PATH = "/messages/"
HEALTH_PATH = "/healthz"

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True)
class HttpOptions:
    host: str = "127.0.0.1"
    port: int = 8765
    allowed_hosts: tuple[str, ...] = ()
    require_token: bool = False
    max_body_bytes: int = 4 * 1024 * 1024
    rate_limit_per_second: float = 50.0
    rate_limit_burst: int = 200
    shutdown_timeout_seconds: float = 30.0

    @classmethod
    def from_settings(
        cls,
        settings: ServerSettings,
        *,
        host: str | None = None,
        port: int | None = None,
        allowed_hosts: tuple[str, ...] = (),
    ) -> HttpOptions:
        """The ``[server]`` settings, with what the command line says on top."""
        return cls(
            host=host or settings.host,
            port=settings.port if port is None else port,
            allowed_hosts=(*settings.allowed_hosts, *allowed_hosts),
            require_token=settings.require_token,
            max_body_bytes=settings.max_body_bytes,
            rate_limit_per_second=settings.rate_limit_per_second,
            rate_limit_burst=settings.rate_limit_burst,
            shutdown_timeout_seconds=settings.shutdown_timeout_seconds,
        )

    def describe(self) -> str:
        why = self.token_required_because
        return (
            f"jetpack {__version__}: MCP on http://{_bracketed(self.host)}:{self.port}{MCP_PATH} (Streamable HTTP) "
            f"and {SSE_PATH} (SSE), health at {HEALTH_PATH}; "
            + (f"bearer tokens required ({why})" if why else "bearer tokens optional (loopback only)")
        )

    @property
    def token_required_because(self) -> str | None:
        """Why this server requires tokens, or None when they are optional (plain loopback)."""
        if self.require_token:
            return "server.require_token is set"
        if not is_loopback(self.host):
            return f"it listens on {self.host}, beyond loopback"
        public = [h for h in self.allowed_hosts if h != "*" and not is_loopback(_host_part(h))]
        if public:
            # A loopback server reached by a public name sits behind a proxy: every request looks local.
            return f"it is served as {public[0]} (behind a proxy)"
        return None


def _host_part(name: str) -> str:
    """'example.com:8443' -> 'example.com'; '[::1]:80' -> '::1'."""
    if name.startswith("["):
        return name[1:].split("]", 1)[0]
    return name.split(":", 1)[0] if name.count(":") == 1 else name


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def transport_security(options: HttpOptions) -> TransportSecuritySettings:
    """Host/Origin checks (DNS-rebinding protection): on for loopback and for every name given
    with --allowed-host; off for a public bind without names (its tokens guard it) or with '*'."""
    if "*" in options.allowed_hosts or (not is_loopback(options.host) and not options.allowed_hosts):
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    bound = [] if is_loopback(options.host) or options.host in ("0.0.0.0", "::") else [_bracketed(options.host)]
    names = [*_LOOPBACK_NAMES, *bound, *options.allowed_hosts]
    hosts: list[str] = []
    origins: list[str] = []
    for name in dict.fromkeys(names):
        has_port = name.rsplit("]", 1)[-1].count(":") == 1
        hosts += [name] if has_port else [name, f"{name}:*"]
        for scheme in ("http", "https"):
            origins += [f"{scheme}://{name}"] if has_port else [f"{scheme}://{name}", f"{scheme}://{name}:*"]
    return TransportSecuritySettings(allowed_hosts=hosts, allowed_origins=origins)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
