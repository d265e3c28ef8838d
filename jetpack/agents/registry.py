"""The agent registry: names, skills and liveness of the sessions acting on the queue.

A name belongs to one live session at a time. A session keeps it by acting (each call is a
heartbeat); it is free again once that session ends cleanly, goes silent for
``agents.stale_seconds``, or (on the same host) its process is gone.
"""

from __future__ import annotations

import json
import os
import random
import socket
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel

from jetpack.clock import Clock, SystemClock, format_ms, to_datetime
from jetpack.config import AgentSettings
from jetpack.errors import Conflict, InvalidInput
from jetpack.processes import process_alive
from jetpack.store import DataLayer, Row
from jetpack.tasks.model import NAME_MAX, normalise_names

_ADJECTIVES = (
    "amber",
    "azure",
    "bold",
    "brave",
    "brisk",
    "calm",
    "clever",
    "coral",
    "crisp",
    "dapper",
    "eager",
    "fair",
    "fleet",
    "gentle",
    "golden",
    "keen",
    "lively",
    "lucid",
    "mellow",
    "nimble",
    "noble",
    "plucky",
    "quick",
    "quiet",
    "rapid",
    "sage",
    "silver",
    "steady",
    "sunny",
    "swift",
    "tidy",
    "vivid",
)
_NOUNS = (
    "badger",
    "bison",
    "crane",
    "falcon",
    "ferret",
    "finch",
    "fox",
    "gecko",
    "heron",
    "ibis",
    "jay",
    "kestrel",
    "koala",
    "lark",
    "lynx",
    "marten",
    "newt",
    "otter",
    "owl",
    "panda",
    "puffin",
    "quail",
    "raven",
    "robin",
    "seal",
    "sparrow",
    "stoat",
    "swift",
    "tern",
    "viper",
    "wren",
    "yak",
)


def generate_name(rng: random.Random | None = None) -> str:
    rng = rng or random.Random()
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}"


def check_agent_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > NAME_MAX or not all(c.isalnum() or c in "-_." for c in name):
        raise InvalidInput(
            f"agent name {name[:80]!r} must be 1-{NAME_MAX} letters, digits, '-', '_' or '.' (e.g. 'blue-heron')"
        )
    if name == "system":
        raise InvalidInput("'system' is reserved for Jetpack itself; choose another agent name")
    return name


def parse_skills(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else value
    return normalise_names([s for s in (i.strip() for i in items) if s])


class AgentRecord(BaseModel):
    name: str
    skills: list[str]
    session_id: str
    client_name: str | None = None
    client_session_id: str | None = None
    pid: int | None = None
    host: str | None = None
    registered_at: datetime
    last_seen_at: datetime
    live: bool


@dataclass(frozen=True)
class SessionInfo:
    """What identifies the session claiming a name."""

    session_id: str
    client_name: str | None = None
    client_session_id: str | None = None
    pid: int | None = None
    host: str | None = None

    @classmethod
    def for_this_process(cls, session_id: str, client_session_id: str | None = None) -> SessionInfo:
        return cls(session_id, None, client_session_id, os.getpid(), socket.gethostname())


class AgentRegistry:
    def __init__(self, store: DataLayer, settings: AgentSettings | None = None, clock: Clock | None = None) -> None:
        self.store = store
        self.settings = settings or AgentSettings()
        self.clock = clock or SystemClock()

    def register(self, name: str, skills: list[str], session: SessionInfo) -> AgentRecord:
        """Bind ``name`` to ``session``; refused while another live session holds it."""
        name = check_agent_name(name)
        now = self.clock.now_ms()
        current = self._row(name)
        takeover = current is not None and self._is_free_for(current, session, now)
        rows = self.store.execute(
            """INSERT INTO agents(name, skills, session_id, client_name, client_session_id, pid, host,
                                  registered_at, last_seen_at, ended_at)
            VALUES (:name, :skills, :sid, :client, :csid, :pid, :host, :now, :now, NULL)
            ON CONFLICT(name) DO UPDATE SET skills = excluded.skills, session_id = excluded.session_id,
                client_name = excluded.client_name, client_session_id = excluded.client_session_id,
                pid = excluded.pid, host = excluded.host, last_seen_at = excluded.last_seen_at,
                registered_at = CASE WHEN agents.session_id = excluded.session_id
                                     THEN agents.registered_at ELSE excluded.registered_at END,
                ended_at = NULL
            WHERE agents.session_id = :sid OR (:takeover AND agents.session_id = :old_sid)
            RETURNING *""",
            {
                "name": name,
                "skills": json.dumps(skills),
                "sid": session.session_id,
                "client": session.client_name,
                "csid": session.client_session_id,
                "pid": session.pid,
                "host": session.host,
                "now": now,
                "takeover": takeover,
                "old_sid": current["session_id"] if current else None,
            },
        )
        if rows:
            return self._record(rows[0], now)
        holder = self._row(name)
        assert holder is not None
        raise Conflict(
            f"agent name {name!r} is held by a live session (pid {holder['pid']} on {holder['host']}, last seen "
            f"{format_ms(holder['last_seen_at'])}); choose another name, or stop that session first"
        )

    def remember(self, name: str, skills: list[str]) -> None:
        """Make a name known without a live session (people and scripts at the CLI), so mail can
        reach it; an existing agent keeps its row."""
        if self._row(name) is not None:
            return  # known already: no write
        now = self.clock.now_ms()
        self.store.execute(
            """INSERT INTO agents(name, skills, session_id, client_name, registered_at, last_seen_at, ended_at)
            SELECT :name, :skills, 'cli', 'jetpack-cli', :now, :now, :now
            WHERE NOT EXISTS (SELECT 1 FROM agents WHERE name = :name)""",
            {"name": check_agent_name(name), "skills": json.dumps(skills), "now": now},
        )

    def touch(self, name: str, session_id: str) -> bool:
        """Record a heartbeat; False when this session no longer holds the name."""
        rows = self.store.execute(
            "UPDATE agents SET last_seen_at = :now WHERE name = :name AND session_id = :sid RETURNING name",
            {"now": self.clock.now_ms(), "name": name, "sid": session_id},
        )
        return bool(rows)

    def end_session(self, name: str, session_id: str) -> None:
        self.store.execute(
            "UPDATE agents SET ended_at = :now WHERE name = :name AND session_id = :sid RETURNING name",
            {"now": self.clock.now_ms(), "name": name, "sid": session_id},
        )

    def list_agents(self) -> list[AgentRecord]:
        now = self.clock.now_ms()
        return [self._record(r, now) for r in self.store.query("SELECT * FROM agents ORDER BY last_seen_at DESC")]

    def get(self, name: str) -> AgentRecord | None:
        row = self._row(name)
        return None if row is None else self._record(row, self.clock.now_ms())

    def _row(self, name: str) -> Row | None:
        rows = self.store.query("SELECT * FROM agents WHERE name = :name", {"name": name})
        return rows[0] if rows else None

    def _is_live(self, row: Row, now: int) -> bool:
        if row["ended_at"] is not None:
            return False
        if now - row["last_seen_at"] > self.settings.stale_seconds * 1000:
            return False
        return not (row["host"] == socket.gethostname() and row["pid"] and not process_alive(row["pid"]))

    def _is_free_for(self, row: Row, session: SessionInfo, now: int) -> bool:
        same_client_session = session.client_session_id is not None and (
            row["client_session_id"] == session.client_session_id
        )
        return same_client_session or not self._is_live(row, now)

    def _record(self, row: Row, now: int) -> AgentRecord:
        return AgentRecord(
            name=row["name"],
            skills=json.loads(row["skills"]),
            session_id=row["session_id"],
            client_name=row["client_name"],
            client_session_id=row["client_session_id"],
            pid=row["pid"],
            host=row["host"],
            registered_at=to_datetime(row["registered_at"]),
            last_seen_at=to_datetime(row["last_seen_at"]),
            live=self._is_live(row, now),
        )
