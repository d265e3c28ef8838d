"""Advisory file reservations: reserve, renew, release, check — conflicts are data, not errors.

Two reservations of different agents conflict when their patterns overlap, unless both are shared
(observe-only). ``mode="advisory"`` always records and reports conflicts; ``mode="exclusive"``
records nothing when anything conflicts, and an exclusive reservation blocks other agents' commits
through the pre-commit hook. Expired reservations stop counting at once and are swept later.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel

from jetpack.clock import Clock, SystemClock, to_datetime
from jetpack.config import Settings
from jetpack.errors import Conflict, InvalidInput
from jetpack.reservations.patterns import covers, literal_prefix, normalise_pattern, patterns_overlap
from jetpack.store import DataLayer, GuardFailed, Row, Statement, expect

MAX_PATHS = 200
_ATTEMPTS = 8


class ReserveMode(StrEnum):
    ADVISORY = "advisory"  # always recorded; conflicts come back as data
    EXCLUSIVE = "exclusive"  # recorded only if nothing conflicts; blocks others' commits


@dataclass(frozen=True)
class ReservationContext:
    store: DataLayer
    repo_root: Path | None = None
    clock: Clock = field(default_factory=SystemClock)
    default_ttl_seconds: int = 3600
    max_ttl_seconds: int = 7 * 86_400

    def now(self) -> int:
        return self.clock.now_ms()

    @classmethod
    def for_settings(cls, settings: Settings, store: DataLayer, clock: Clock | None = None) -> ReservationContext:
        return cls(
            store=store,
            repo_root=settings.project_dir,
            clock=clock or SystemClock(),
            default_ttl_seconds=settings.reservations.default_ttl_seconds,
            max_ttl_seconds=settings.reservations.max_ttl_seconds,
        )


class ReservationView(BaseModel):
    id: int
    agent: str
    pattern: str
    shared: bool = False
    exclusive: bool = False
    reason: str | None = None
    task_id: str | None = None
    intent: bool = False
    expires_at: datetime


class ConflictView(BaseModel):
    """Someone else's active reservation that overlaps a path you asked about."""

    path: str
    holder: str
    pattern: str
    reservation_id: int
    exclusive: bool = False
    shared: bool = False
    expires_at: datetime
    task_id: str | None = None
    reason: str | None = None


class ReserveResult(BaseModel):
    recorded: bool
    reservations: list[ReservationView] = []
    conflicts: list[ConflictView] = []


def view_of(row: Row) -> ReservationView:
    return ReservationView(
        id=row["id"],
        agent=row["agent"],
        pattern=row["pattern"],
        shared=bool(row["shared"]),
        exclusive=bool(row["exclusive"]),
        reason=row["reason"],
        task_id=row["task_id"],
        intent=bool(row["intent"]),
        expires_at=to_datetime(row["expires_at"]),
    )


def normalise_paths(ctx: ReservationContext, paths: Iterable[str]) -> list[str]:
    items = list(paths)
    if not items:
        raise InvalidInput("paths is empty; give repo-relative paths or globs such as 'src/api/**'")
    if len(items) > MAX_PATHS:
        raise InvalidInput(f"{len(items)} paths in one call; at most {MAX_PATHS} (a glob can cover many files)")
    return list(dict.fromkeys(normalise_pattern(p, ctx.repo_root) for p in items))


def _candidate_rows(
    ctx: ReservationContext, pattern: str, now: int, *, exclude_agent: str | None, literal: bool = False
) -> list[Row]:
    """Active reservations whose pattern could overlap ``pattern`` (by literal prefix), others' only.
    A ``literal`` path is its own prefix, whatever characters it holds."""
    prefix = pattern if literal else literal_prefix(pattern)
    if not prefix:  # the pattern starts with a glob: anything may overlap it
        return ctx.store.query(
            "SELECT * FROM reservations WHERE released_at IS NULL AND expires_at > :now AND agent IS NOT :me "
            "ORDER BY id",
            {"now": now, "me": exclude_agent},
        )
    segments = prefix.split("/")
    above = ["", *("/".join(segments[: i + 1]) for i in range(len(segments)))]
    # Two index searches (prefixes at or above ours; prefixes below ours), not one OR: SQLite does not
    # turn that OR into index lookups and would read every active reservation.
    active = "released_at IS NULL AND expires_at > :now AND agent IS NOT :me"
    rows = ctx.store.query(
        f"""SELECT * FROM reservations WHERE {active} AND prefix IN (SELECT value FROM json_each(:above))
        UNION ALL
        SELECT * FROM reservations WHERE {active} AND prefix >= :below_lo AND prefix < :below_hi""",
        {
            "now": now,
            "me": exclude_agent,
            "above": json.dumps(above),
            # prefixes strictly below `prefix` as whole segments: "prefix/" <= p < "prefix0" ('0' follows '/')
            "below_lo": f"{prefix}/",
            "below_hi": f"{prefix}0",
        },
    )
    return sorted(rows, key=lambda row: row["id"])  # oldest reservation first, as the scan above gives


def find_conflicts(
    ctx: ReservationContext,
    agent: str | None,
    patterns: list[str],
    *,
    shared: bool = False,
    now: int | None = None,
    files: bool = False,
) -> list[ConflictView]:
    """Other agents' active reservations overlapping ``patterns`` (shared vs shared never conflicts).
    With ``files=True`` the patterns are literal file paths (e.g. staged in git: never directories,
    and characters such as ``[`` are part of the name), so a reservation conflicts only if it covers
    the file itself."""
    now = ctx.now() if now is None else now
    found: list[ConflictView] = []
    for pattern in patterns:
        for row in _candidate_rows(ctx, pattern, now, exclude_agent=agent, literal=files):
            if shared and row["shared"]:
                continue
            hit = covers(row["pattern"], pattern) if files else patterns_overlap(pattern, row["pattern"])
            if hit:
                found.append(
                    ConflictView(
                        path=pattern,
                        holder=row["agent"],
                        pattern=row["pattern"],
                        reservation_id=row["id"],
                        exclusive=bool(row["exclusive"]),
                        shared=bool(row["shared"]),
                        expires_at=to_datetime(row["expires_at"]),
                        task_id=row["task_id"],
                        reason=row["reason"],
                    )
                )
    return found


def check_files(ctx: ReservationContext, agent: str | None, paths: list[str]) -> list[ConflictView]:
    """Read-only: who else holds something overlapping these paths right now."""
    return find_conflicts(ctx, agent, normalise_paths(ctx, paths))


def _version(ctx: ReservationContext) -> str:
    rows = ctx.store.query("SELECT value FROM meta WHERE key = 'reservations_version'")
    return str(rows[0]["value"]) if rows else "0"


def _unchanged_since(version: str) -> list[Statement]:
    """Reservation writes are checked-then-written: abort if anyone wrote reservations meanwhile."""
    return [
        expect("coalesce((SELECT value FROM meta WHERE key = 'reservations_version'), '0') = :v", {"v": version}),
        Statement(
            "INSERT INTO meta(key, value) VALUES ('reservations_version', '1') ON CONFLICT(key) "
            "DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        ),
    ]


def reserve_files(
    ctx: ReservationContext,
    agent: str,
    paths: list[str],
    *,
    mode: ReserveMode = ReserveMode.ADVISORY,
    shared: bool = False,
    ttl_seconds: int | None = None,
    reason: str | None = None,
    task_id: str | None = None,
    intent: bool = False,
) -> ReserveResult:
    patterns = normalise_paths(ctx, paths)
    ttl = _ttl(ctx, ttl_seconds)
    if shared and mode is ReserveMode.EXCLUSIVE:
        raise InvalidInput("a reservation cannot be both shared and exclusive; choose one")
    for _ in range(_ATTEMPTS):
        version = _version(ctx)
        now = ctx.now()
        conflicts = find_conflicts(ctx, agent, patterns, shared=shared, now=now)
        if conflicts and mode is ReserveMode.EXCLUSIVE:
            return ReserveResult(recorded=False, conflicts=conflicts)
        params = {
            "agent": agent,
            "shared": int(shared),
            "exclusive": int(mode is ReserveMode.EXCLUSIVE),
            "reason": reason,
            "task": task_id,
            "intent": int(intent),
            "now": now,
            "expires": now + ttl * 1000,
        }
        statements = _unchanged_since(version)
        for pattern in patterns:
            p = {**params, "pattern": pattern, "prefix": literal_prefix(pattern)}
            # Reserving a pattern you already hold refreshes it (the later expiry wins).
            statements.append(
                Statement(
                    """UPDATE reservations SET shared = :shared, exclusive = :exclusive,
                        reason = coalesce(:reason, reason), task_id = coalesce(:task, task_id),
                        intent = max(intent, :intent), expires_at = max(expires_at, :expires)
                    WHERE agent = :agent AND pattern = :pattern AND released_at IS NULL AND expires_at > :now""",
                    p,
                )
            )
            statements.append(
                Statement(
                    """INSERT INTO reservations(agent, pattern, prefix, shared, exclusive, reason, task_id, intent,
                        created_at, expires_at)
                    SELECT :agent, :pattern, :prefix, :shared, :exclusive, :reason, :task, :intent, :now, :expires
                    WHERE NOT EXISTS (SELECT 1 FROM reservations WHERE agent = :agent AND pattern = :pattern
                                      AND released_at IS NULL AND expires_at > :now)""",
                    p,
                )
            )
        try:
            ctx.store.write(statements)
        except GuardFailed:
            continue  # someone reserved or released meanwhile: check the conflicts again
        rows = ctx.store.query(
            "SELECT * FROM reservations WHERE agent = :agent AND released_at IS NULL AND expires_at > :now "
            "AND pattern IN (SELECT value FROM json_each(:patterns)) ORDER BY id",
            {"agent": agent, "now": now, "patterns": json.dumps(patterns)},
        )
        return ReserveResult(recorded=True, reservations=[view_of(r) for r in rows], conflicts=conflicts)
    raise Conflict("reservations kept changing while reserving; call reserve_files again")


def _ttl(ctx: ReservationContext, ttl_seconds: int | None) -> int:
    ttl = ctx.default_ttl_seconds if ttl_seconds is None else ttl_seconds
    if not 60 <= ttl <= ctx.max_ttl_seconds:
        raise InvalidInput(f"ttl_seconds must be between 60 and {ctx.max_ttl_seconds}, not {ttl}")
    return ttl


def _selection(
    ctx: ReservationContext, ids: list[int] | None, patterns: list[str] | None, everything: bool
) -> tuple[str, dict[str, object]]:
    chosen = sum(x is not None and x != [] for x in (ids, patterns)) + int(everything)
    if chosen != 1:
        raise InvalidInput("say which reservations: ids, paths (the patterns you reserved), or all=true — one of them")
    if everything:
        return "1 = 1", {}
    if ids:
        return "id IN (SELECT value FROM json_each(:ids))", {"ids": json.dumps(ids)}
    normalised = normalise_paths(ctx, patterns or [])
    return "pattern IN (SELECT value FROM json_each(:patterns))", {"patterns": json.dumps(normalised)}


def release_files(
    ctx: ReservationContext,
    agent: str,
    *,
    ids: list[int] | None = None,
    paths: list[str] | None = None,
    everything: bool = False,
) -> list[ReservationView]:
    """Release your own active reservations (by id, by pattern, or all). Releasing twice is harmless."""
    where, params = _selection(ctx, ids, paths, everything)
    rows = ctx.store.write(
        [
            *_unchanged_since(_version(ctx)),
            Statement(
                f"""UPDATE reservations SET released_at = :now
                WHERE agent = :agent AND released_at IS NULL AND {where} RETURNING *""",
                {**params, "agent": agent, "now": ctx.now()},
            ),
        ]
    )[2]
    return [view_of(r) for r in rows]


def renew_files(
    ctx: ReservationContext,
    agent: str,
    *,
    ids: list[int] | None = None,
    paths: list[str] | None = None,
    everything: bool = False,
    extend_seconds: int | None = None,
) -> list[ReservationView]:
    """Extend your active reservations by ``extend_seconds``, from the later of now and their expiry."""
    where, params = _selection(ctx, ids, paths, everything)
    extend = _ttl(ctx, extend_seconds)
    now = ctx.now()
    rows = ctx.store.execute(
        f"""UPDATE reservations SET expires_at = min(max(expires_at, :now) + :extend, :now + :cap)
        WHERE agent = :agent AND released_at IS NULL AND expires_at > :now AND {where} RETURNING *""",
        {**params, "agent": agent, "now": now, "extend": extend * 1000, "cap": ctx.max_ttl_seconds * 1000},
    )
    return [view_of(r) for r in rows]


def release_for_task(agent: str, task_id: str, now: int) -> Statement:
    """Close an agent's reservations (its intent) for a task — only if that task was completed at
    ``now``, i.e. by the completion in the same batch."""
    return Statement(
        """UPDATE reservations SET released_at = :now
        WHERE agent = :agent AND task_id = :task AND released_at IS NULL
          AND EXISTS (SELECT 1 FROM tasks WHERE id = :task AND state = 'done' AND closed_at = :now)""",
        {"agent": agent, "task": task_id, "now": now},
    )


def active_reservations(ctx: ReservationContext, agent: str | None = None, limit: int = 200) -> list[ReservationView]:
    rows = ctx.store.query(
        "SELECT * FROM reservations WHERE released_at IS NULL AND expires_at > :now "
        "AND (:agent IS NULL OR agent = :agent) ORDER BY expires_at LIMIT :limit",
        {"now": ctx.now(), "agent": agent, "limit": limit},
    )
    return [view_of(r) for r in rows]


def sweep_expired_reservations(ctx: ReservationContext) -> int:
    """Mark lapsed reservations released (they already stopped counting when they expired)."""
    rows = ctx.store.execute(
        "UPDATE reservations SET released_at = expires_at WHERE released_at IS NULL AND expires_at <= :now "
        "RETURNING id",
        {"now": ctx.now()},
    )
    return len(rows)
