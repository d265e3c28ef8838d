"""Bearer tokens for the HTTP transports: created once, stored hashed, revocable, optionally
bound to one agent.

A token's secret is shown once, when it is created; the database keeps only its SHA-256 hash
(what a presented token is checked against) and a short prefix of it (how people recognise it in
listings). A token bound to an agent can only act as that agent, and a name bound to a live token
can only be taken through a token bound to it, so one agent cannot act on another's claims.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel

from jetpack.agents import check_agent_name
from jetpack.clock import Clock, SystemClock, to_datetime
from jetpack.errors import Conflict, InvalidInput, NotFound, NotPermitted
from jetpack.store import DataLayer, Row, Statement

TOKEN_PREFIX = "jpt_"
_SECRET_BYTES = 32  # 43 URL-safe characters after the prefix
_SECRET_LENGTH = len(TOKEN_PREFIX) + 43
_SHOWN_CHARS = len(TOKEN_PREFIX) + 8  # the non-secret prefix listings show, e.g. jpt_Xc91aQ2k
_LABEL_MAX = 100
# last_used_at is written at most this often per token, so verifying a token rarely writes.
_TOUCH_INTERVAL_MS = 60_000


class TokenRecord(BaseModel):
    """A token as listings show it: never the secret."""

    id: int
    name: str
    prefix: str
    agent: str | None
    created_at: datetime
    created_by: str
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def principal(self) -> str:
        """A stable, non-secret name for this token (rate limits, session ownership)."""
        return f"token-{self.id}"


@dataclass(frozen=True)
class NewToken:
    record: TokenRecord
    secret: str  # shown once, never stored


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_token(value: str) -> bool:
    return value.startswith(TOKEN_PREFIX) and len(value) == _SECRET_LENGTH


@dataclass
class TokenRegistry:
    store: DataLayer
    clock: Clock = field(default_factory=SystemClock)

    def create(self, *, created_by: str, agent: str | None = None, name: str = "") -> NewToken:
        """A new token; its secret is in the result and nowhere else."""
        if agent is not None:
            agent = check_agent_name(agent)
        name = name.strip()
        if len(name) > _LABEL_MAX:
            raise InvalidInput(f"a token name is at most {_LABEL_MAX} characters")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)
        now = self.clock.now_ms()
        inserted, _ = self.store.write(
            [
                Statement(
                    """INSERT INTO tokens(name, prefix, secret_hash, agent, created_at, created_by)
                    VALUES (:name, :prefix, :hash, :agent, :now, :by) RETURNING *""",
                    {
                        "name": name,
                        "prefix": secret[:_SHOWN_CHARS],
                        "hash": hash_secret(secret),
                        "agent": agent,
                        "now": now,
                        "by": created_by,
                    },
                ),
                _event(now, created_by, "token_created", "prefix = :prefix", {"prefix": secret[:_SHOWN_CHARS]}),
            ]
        )
        return NewToken(_record(inserted[0]), secret)

    def list_tokens(self, *, include_revoked: bool = True) -> list[TokenRecord]:
        where = "" if include_revoked else "WHERE revoked_at IS NULL"
        return [_record(row) for row in self.store.query(f"SELECT * FROM tokens {where} ORDER BY id")]

    def find(self, reference: str) -> TokenRecord:
        """A token by its id, its listed prefix, or the whole secret."""
        reference = reference.strip()
        if reference.isdigit():
            rows = self.store.query("SELECT * FROM tokens WHERE id = :id", {"id": int(reference)})
        elif looks_like_token(reference):
            rows = self.store.query("SELECT * FROM tokens WHERE secret_hash = :h", {"h": hash_secret(reference)})
        elif reference.startswith(TOKEN_PREFIX) and len(reference) >= len(TOKEN_PREFIX) + 4:
            rows = self.store.query(
                "SELECT * FROM tokens WHERE substr(prefix, 1, :n) = :p", {"n": len(reference), "p": reference}
            )
        else:
            raise InvalidInput(f"name a token by its id (e.g. 3) or its prefix (e.g. {TOKEN_PREFIX}Xc91aQ2k)")
        if len(rows) > 1:
            raise InvalidInput(f"{reference!r} matches {len(rows)} tokens; give more of the prefix, or the id")
        if not rows:
            raise NotFound(f"no token {reference!r}; run `jetpack token list` to see the tokens")
        return _record(rows[0])

    def revoke(self, reference: str, *, revoked_by: str) -> TokenRecord:
        token = self.find(reference)
        now = self.clock.now_ms()
        updated, _ = self.store.write(
            [
                Statement(
                    """UPDATE tokens SET revoked_at = :now, revoked_by = :by
                    WHERE id = :id AND revoked_at IS NULL RETURNING *""",
                    {"now": now, "by": revoked_by, "id": token.id},
                ),
                _event(
                    now, revoked_by, "token_revoked", "id = :id AND revoked_at = :now", {"id": token.id, "now": now}
                ),
            ]
        )
        if not updated:
            when = f" at {token.revoked_at:%Y-%m-%d %H:%M} UTC" if token.revoked_at else ""
            raise Conflict(f"token {token.id} ({token.prefix}…) was already revoked{when}")
        return _record(updated[0])

    def verify(self, secret: str) -> TokenRecord | None:
        """The active token with this secret, or None (unknown, malformed or revoked)."""
        if not looks_like_token(secret):
            return None
        rows = self.store.query(
            "SELECT * FROM tokens WHERE secret_hash = :h AND revoked_at IS NULL", {"h": hash_secret(secret)}
        )
        if not rows:
            return None
        row = rows[0]
        now = self.clock.now_ms()
        if row["last_used_at"] is None or now - row["last_used_at"] >= _TOUCH_INTERVAL_MS:
            self.store.execute("UPDATE tokens SET last_used_at = :now WHERE id = :id", {"now": now, "id": row["id"]})
            row = {**row, "last_used_at": now}
        return _record(row)

    def check_may_act_as(self, token: TokenRecord | None, name: str) -> None:
        """Refuse a name this connection's token may not act as."""
        if token is not None and token.agent is not None:
            if name != token.agent:
                raise NotPermitted(
                    f"this connection's token (id {token.id}) is bound to agent {token.agent!r}, so it cannot act "
                    f"as {name!r}; leave the name out (you are {token.agent}), or connect with a token made by "
                    f"`jetpack token create --agent {name}`"
                )
            return
        bound = self.store.query(
            "SELECT id FROM tokens WHERE agent = :name AND revoked_at IS NULL LIMIT 1", {"name": name}
        )
        if bound:
            raise NotPermitted(
                f"agent name {name!r} is reserved for connections whose token is bound to it; connect with that "
                "token, or choose another name"
            )


def _event(now: int, actor: str, kind: str, token_condition: str, params: dict[str, object]) -> Statement:
    """The audit event of a token change: which token (by id) and agent, never any of its secret."""
    return Statement(
        f"""INSERT INTO events(at, actor, kind, note, data)
        SELECT :at, :actor, :kind, 'token ' || id || CASE WHEN agent IS NULL THEN '' ELSE ' for ' || agent END,
               json_object('token_id', id, 'agent', agent)
        FROM tokens WHERE {token_condition}""",
        {**params, "at": now, "actor": actor, "kind": kind},
    )


def _record(row: Row) -> TokenRecord:
    return TokenRecord(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        agent=row["agent"],
        created_at=to_datetime(row["created_at"]),
        created_by=row["created_by"],
        last_used_at=to_datetime(row["last_used_at"]),
        revoked_at=to_datetime(row["revoked_at"]),
        revoked_by=row["revoked_by"],
    )
