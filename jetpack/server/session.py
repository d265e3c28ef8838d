"""Per-connection state of the MCP server: which agent this session is, and its heartbeat.

The agent is registered lazily, on the first tool call, so a server that is started and never
used writes nothing. Every later call is a heartbeat that also renews the agent's leases;
both are throttled so the hot path (claim, complete) rarely pays for an extra write.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jetpack.actor import Actor
from jetpack.agents import (
    AgentRecord,
    AgentRegistry,
    SessionInfo,
    check_agent_name,
    generate_name,
    parse_skills,
)
from jetpack.errors import Conflict, NotPermitted
from jetpack.mail import MailContext
from jetpack.memory.context import MemoryContext
from jetpack.reservations.service import ReservationContext
from jetpack.tasks import QueueContext, renew_leases

log = logging.getLogger(__name__)

_GENERATED_NAME_TRIES = 25


@dataclass(frozen=True)
class IdentityDefaults:
    """Identity from the environment of the server process (JETPACK_AGENT, JETPACK_SKILLS), or,
    in a hub, from the environment of the relay that an agent launched."""

    name: str | None = None
    skills: tuple[str, ...] = ()
    client_session_id: str | None = None
    # The process whose death ends the session (a hub's relay); None: this process.
    pid: int | None = None

    @classmethod
    def from_environ(cls, environ: Any = None, pid: int | None = None) -> IdentityDefaults:
        environ = os.environ if environ is None else environ
        name = environ.get("JETPACK_AGENT") or None
        return cls(
            name=check_agent_name(name) if name else None,
            skills=tuple(parse_skills(environ.get("JETPACK_SKILLS"))),
            client_session_id=environ.get("CLAUDE_CODE_SESSION_ID") or None,
            pid=pid,
        )


@dataclass
class AgentSession:
    queue: QueueContext
    registry: AgentRegistry
    mail: MailContext
    reservations: ReservationContext
    memory: MemoryContext
    defaults: IdentityDefaults = field(default_factory=IdentityDefaults)
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    client_name: str | None = None
    client_session_id: str | None = None
    # Raises when this session may not act as a name (HTTP: the connection's token decides).
    authorize_name: Callable[[str], None] | None = None
    _actor: Actor | None = None
    _last_touch_ms: int = 0
    # The mail counts a tool already read during the current call, for its result's mail notice.
    attention_seen: tuple[int, int] | None = None
    # Over HTTP, calls of one session may run at once on worker threads.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.client_session_id = self.client_session_id or self.defaults.client_session_id

    @property
    def touch_interval_ms(self) -> int:
        lease = self.queue.settings.lease_seconds
        # Well inside every silence threshold: losing the name, a stalled task, death.
        agents = self.registry.settings
        quiet = min(agents.stale_seconds, agents.stalled_seconds, agents.dead_seconds)
        return int(min(5.0, lease / 4, quiet / 4) * 1000)

    def observe_client(self, client_name: str | None, meta: Any) -> None:
        """Remember what the client tells about itself (Codex sends its session id in every call's _meta)."""
        if client_name and not self.client_name:
            self.client_name = client_name
        if self.client_session_id is None and isinstance(meta, dict):
            turn = meta.get("x-codex-turn-metadata")
            if isinstance(turn, str):
                try:
                    turn = json.loads(turn)
                except ValueError:
                    turn = None
            if isinstance(turn, dict) and isinstance(turn.get("session_id"), str):
                self.client_session_id = turn["session_id"]

    def actor(self) -> Actor:
        """The acting agent: registered on first use, heartbeat (throttled) on every call."""
        with self._lock:
            return self._current_actor()

    def _current_actor(self) -> Actor:
        if self._actor is None:
            return self._register_default()
        now = self.queue.now()
        if now - self._last_touch_ms >= self.touch_interval_ms:
            if not self.registry.touch(self._actor.name, self.session_id):
                lost, self._actor = self._actor.name, None
                raise Conflict(
                    f"this session lost the agent name {lost!r} to another session after being silent longer "
                    "than agents.stale_seconds; call register_agent to take a name again"
                )
            renew_leases(self.queue, self._actor)
            self._last_touch_ms = now
        return self._actor

    def register(self, name: str | None, skills: list[str] | None) -> AgentRecord:
        """Explicit registration (the register_agent tool): set this session's name and skills."""
        with self._lock:
            return self._register(name, skills)

    def _register(self, name: str | None, skills: list[str] | None) -> AgentRecord:
        current = self._actor
        wanted_skills = (
            parse_skills(skills)
            if skills is not None
            else (sorted(current.skills) if current else list(self.defaults.skills))
        )
        if name is None:
            if current is not None:
                return self._bind(current.name, wanted_skills)
            if self.defaults.name:
                return self._bind(self.defaults.name, wanted_skills)
            return self._register_generated(wanted_skills)
        record = self._bind(check_agent_name(name), wanted_skills)
        if current is not None and current.name != record.name:
            self.registry.end_session(current.name, self.session_id)
        return record

    @property
    def agent_name(self) -> str | None:
        """The agent this session acts as, if it has registered yet (no database access)."""
        return None if self._actor is None else self._actor.name

    def close(self) -> None:
        if self._actor is not None:
            self.registry.end_session(self._actor.name, self.session_id)

    def _register_default(self) -> Actor:
        if self.defaults.name:
            record = self._bind(self.defaults.name, list(self.defaults.skills))
        else:
            record = self._register_generated(list(self.defaults.skills))
        return Actor(record.name, frozenset(record.skills))

    def _register_generated(self, skills: list[str]) -> AgentRecord:
        for _ in range(_GENERATED_NAME_TRIES):
            try:
                return self._bind(generate_name(), skills)
            except (Conflict, NotPermitted):  # held by a live session, or reserved for a token
                continue
        return self._bind(f"{generate_name()}-{uuid.uuid4().hex[:4]}", skills)

    def _bind(self, name: str, skills: list[str]) -> AgentRecord:
        if self.authorize_name is not None:
            self.authorize_name(name)
        info = SessionInfo.for_this_process(self.session_id, self.client_session_id)
        pid = self.defaults.pid or info.pid
        info = SessionInfo(info.session_id, self.client_name, info.client_session_id, pid, info.host)
        record = self.registry.register(name, skills, info)
        self._actor = Actor(record.name, frozenset(record.skills))
        self._last_touch_ms = self.queue.now()
        log.info("session %s acts as agent %s (skills: %s)", self.session_id[:8], record.name, record.skills)
        return record
