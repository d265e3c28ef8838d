"""Who is acting: an agent (from an MCP session), a person at the CLI, or the system itself."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Actor:
    name: str
    skills: frozenset[str] = field(default_factory=frozenset)
    # An operator (a person at the CLI with --force) may act on claims held by others.
    operator: bool = False


SYSTEM = Actor("system")
