"""The pre-commit check: do the staged paths overlap another agent's active reservation?

The committer is ``JETPACK_AGENT``. For each staged path — both names of a rename or copy,
deletions included — the check asks the DataLayer (the project's database, found by the usual
settings discovery from the top level of the working tree) for other agents' active reservations
covering it. Another agent's *exclusive* reservation blocks the commit (exit 1); an advisory or
shared one only warns. Your own reservations never count. A database that cannot be read fails
the commit (exit 2): the hook fails closed. ``JETPACK_HOOK_MODE=warn`` turns blocks and failures
into warnings (exit 0). Without ``JETPACK_AGENT`` nothing can be attributed: the commit goes
through with a warning (and, if the database is there, a note of the reservations it touches).

Kept light on purpose (no MCP, no server imports): it runs on every commit.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from jetpack.clock import Clock, SystemClock
from jetpack.config import Settings, load_settings
from jetpack.errors import InvalidInput, JetpackError
from jetpack.hooks.git import GitError, StagedChange, staged_changes, top_level
from jetpack.reservations.service import ConflictView, ReservationContext, find_conflicts
from jetpack.store import open_store

AGENT_VARIABLE = "JETPACK_AGENT"
MODE_VARIABLE = "JETPACK_HOOK_MODE"
BYPASS = "git commit --no-verify"

EXIT_OK = 0
EXIT_BLOCKED = 1
EXIT_ERROR = 2


class HookMode(StrEnum):
    BLOCK = "block"  # another agent's exclusive reservation, or an unreadable database, fails the commit
    WARN = "warn"  # the same findings are only printed; the commit goes through


class HookConflict(BaseModel):
    """Another agent's active reservation covering a staged path."""

    holder: str
    pattern: str
    reservation_id: int
    exclusive: bool = False
    shared: bool = False
    expires_at: datetime
    task_id: str | None = None
    reason: str | None = None
    blocking: bool = False  # whether it blocked this commit (exclusive, attributed, mode=block)


class PathVerdict(BaseModel):
    """A staged path that overlaps other agents' reservations (paths with none are not listed)."""

    path: str  # as git prints it: relative to the top level of the working tree
    status: str  # git's letter: A, C, D, M, R, T, U
    renamed_from: str | None = None  # set on the new name of a rename (or copy)
    renamed_to: str | None = None  # set on the old name of a rename (or copy)
    conflicts: list[HookConflict] = []

    @property
    def blocking(self) -> list[HookConflict]:
        return [c for c in self.conflicts if c.blocking]

    def label(self) -> str:
        verb = "copied" if self.status == "C" else "renamed"
        if self.renamed_to is not None:
            return f"{show_path(self.path)} ({verb} to {show_path(self.renamed_to)})"
        if self.renamed_from is not None:
            return f"{show_path(self.path)} ({verb} from {show_path(self.renamed_from)})"
        if self.status == "D":
            return f"{show_path(self.path)} (deleted)"
        return show_path(self.path)


class CheckReport(BaseModel):
    """The verdict on one commit's staged paths (``--json`` prints it)."""

    verdict: Literal["ok", "warn", "blocked", "error"]
    blocked: bool
    exit_code: int
    mode: HookMode
    agent: str | None = None
    repository: str | None = None
    project: str | None = None
    database: str | None = None
    paths_checked: int = 0
    paths: list[PathVerdict] = []
    warnings: list[str] = []
    error: str | None = None
    checked_at: datetime


class _Unavailable(Exception):
    """The reservations could not be read (the message says why and what to do)."""


def resolve_mode(explicit: str | None, environ: Mapping[str, str]) -> HookMode:
    raw = (explicit if explicit else environ.get(MODE_VARIABLE, "")).strip().lower()
    if not raw:
        return HookMode.BLOCK
    try:
        return HookMode(raw)
    except ValueError:
        source = "--mode" if explicit else MODE_VARIABLE
        raise InvalidInput(f"{source} must be 'block' or 'warn', not {raw!r}") from None


def run_check(
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    agent: str | None = None,
    mode: str | None = None,
    clock: Clock | None = None,
) -> CheckReport:
    """Check the staged paths of the repository at ``cwd``. Never raises for expected failures:
    they come back as ``verdict="error"`` (exit 2), or as warnings in warn mode."""
    environ = os.environ if environ is None else environ
    clock = clock or SystemClock()
    now = _at(clock.now_ms())
    try:
        chosen = resolve_mode(mode, environ)
    except InvalidInput as error:
        return CheckReport(
            verdict="error", blocked=True, exit_code=EXIT_ERROR, mode=HookMode.BLOCK, error=str(error), checked_at=now
        )
    committer = (agent if agent is not None else environ.get(AGENT_VARIABLE, "")).strip() or None
    report = CheckReport(verdict="ok", blocked=False, exit_code=EXIT_OK, mode=chosen, agent=committer, checked_at=now)
    try:
        top = top_level(cwd, environ)
        report.repository = str(top)
        changes = staged_changes(cwd, environ)
    except GitError as error:
        return _failed(report, f"cannot read the staged changes: {error}")
    if committer is None:
        report.warnings.append(
            f"{AGENT_VARIABLE} is not set, so this commit cannot be attributed to an agent and reservations are "
            f"not enforced; agents should commit with {AGENT_VARIABLE}=<their agent name> in the environment"
        )
    if not changes:
        return _finish(report)
    try:
        settings = load_settings(environ, cwd=top)
        report.project, report.database = str(settings.project_dir), settings.database
        if settings.db_url is None:  # a server is checked by connecting to it
            _require_database(settings.db_path)
        report.paths, report.paths_checked, outside = _check_changes(settings, clock, top, committer, changes)
    except _Unavailable as error:
        if committer is None:
            return _finish(report)  # nothing to enforce without a name; no database is no news
        return _failed(report, str(error))
    except Exception as error:  # fail closed on anything that stopped us reading the reservations
        message = _describe_failure(error, report.database)
        if committer is None:
            report.warnings.append(message)
            return _finish(report)
        return _failed(report, message)
    if outside:
        report.warnings.append(
            f"{outside} staged path(s) lie outside the Jetpack project {report.project} and were not checked"
        )
    for verdict in report.paths:
        for conflict in verdict.conflicts:
            conflict.blocking = conflict.exclusive and committer is not None and chosen is HookMode.BLOCK
            if not conflict.blocking:
                report.warnings.append(describe_conflict(verdict, conflict, now, committer=committer, mode=chosen))
    return _finish(report)


def _finish(report: CheckReport) -> CheckReport:
    if any(verdict.blocking for verdict in report.paths):
        report.verdict, report.blocked, report.exit_code = "blocked", True, EXIT_BLOCKED
    elif report.warnings or report.paths:
        report.verdict, report.blocked, report.exit_code = "warn", False, EXIT_OK
    return report


def _failed(report: CheckReport, message: str) -> CheckReport:
    if report.mode is HookMode.WARN:
        report.warnings.append(f"{message} (warn mode: not failing the commit)")
        report.verdict, report.blocked, report.exit_code = "warn", False, EXIT_OK
        return report
    report.error = message
    report.verdict, report.blocked, report.exit_code = "error", True, EXIT_ERROR
    return report


def _require_database(path: Path) -> None:
    """The database must already exist: the check never creates one (a misconfigured project
    would otherwise get a fresh, empty database and every commit would pass)."""
    try:
        path.stat()
    except FileNotFoundError:
        raise _Unavailable(
            f"no Jetpack database at {path}: run `jetpack init` at the top of the repository, or point "
            "JETPACK_PROJECT_DIR (or JETPACK_DB) at the project the agents use"
        ) from None
    except OSError as error:
        raise _Unavailable(f"cannot reach the Jetpack database at {path}: {error.strerror or error}") from None


def _describe_failure(error: Exception, database: str | None) -> str:
    where = f" at {database}" if database else ""
    detail = str(error) if isinstance(error, JetpackError) else f"{type(error).__name__}: {error}"
    return f"cannot read Jetpack's reservations{where}: {detail}"


def _check_changes(
    settings: Settings, clock: Clock, top: Path, committer: str | None, changes: list[StagedChange]
) -> tuple[list[PathVerdict], int, int]:
    """Per staged path (both names of renames), other agents' reservations covering it."""
    store = open_store(settings.db_location, auth_token=settings.db_auth_token)
    try:
        ctx = ReservationContext.for_settings(settings, store, clock)
        now = ctx.now()
        seen: set[str] = set()
        found: list[PathVerdict] = []
        checked = outside = 0
        for change in changes:
            for path in change.paths:
                if path in seen:
                    continue
                seen.add(path)
                in_project = _project_path(top, settings.project_dir, path)
                if in_project is None:
                    outside += 1
                    continue
                checked += 1
                conflicts = _covering(ctx, committer, in_project, now)
                if conflicts:
                    found.append(_verdict(change, path, conflicts))
        return found, checked, outside
    finally:
        store.close()


def _covering(ctx: ReservationContext, committer: str | None, path: str, now: int) -> list[HookConflict]:
    """Other agents' active reservations covering the staged file ``path`` (taken literally)."""
    return [_conflict(view) for view in find_conflicts(ctx, committer, [path], now=now, files=True)]


def _conflict(view: ConflictView) -> HookConflict:
    return HookConflict(
        holder=view.holder,
        pattern=view.pattern,
        reservation_id=view.reservation_id,
        exclusive=view.exclusive,
        shared=view.shared,
        expires_at=view.expires_at,
        task_id=view.task_id,
        reason=view.reason,
    )


def _verdict(change: StagedChange, path: str, conflicts: list[HookConflict]) -> PathVerdict:
    if change.old_path is None:
        return PathVerdict(path=path, status=change.status, conflicts=conflicts)
    if path == change.old_path:
        return PathVerdict(path=path, status=change.status, renamed_to=change.path, conflicts=conflicts)
    return PathVerdict(path=path, status=change.status, renamed_from=change.old_path, conflicts=conflicts)


def _project_path(top: Path, project: Path, path: str) -> str | None:
    """``path`` (relative to the working tree's top) as a path of the Jetpack project, or None
    when it lies outside the project.

    Reservation patterns are relative to the project directory. When that directory is another
    checkout of the repository (the main checkout seen from a linked worktree, inside it or not)
    the two trees have the same layout, so the path is used as it is. When the project is a plain
    directory above the working tree, the path is prefixed; when it is a subdirectory of the
    working tree, paths outside it are not checked.
    """
    if top == project:
        return path
    if (project / ".git").exists() and not project.is_relative_to(top):
        return path
    if top.is_relative_to(project):
        return (top / path).relative_to(project).as_posix()
    if project.is_relative_to(top):
        full = top / path
        return full.relative_to(project).as_posix() if full.is_relative_to(project) else None
    return path


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


# ---------------------------------------------------------------------------------------------
# Wording shared by the text output and the JSON warnings


def show_path(path: str) -> str:
    """A path for a one-line message: as is, or quoted with escapes (as git does) when it holds
    control characters."""
    return path if path.isprintable() else json.dumps(path)


def kind_of(conflict: HookConflict) -> str:
    return "exclusive" if conflict.exclusive else "shared" if conflict.shared else "advisory"


def format_expiry(expires_at: datetime, now: datetime) -> str:
    """``2025-06-01 14:05:09 UTC (in 59 min)``."""
    stamp = expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    seconds = max(0, int((expires_at - now).total_seconds()))
    if seconds < 60:
        left = f"{seconds} s"
    elif seconds < 5400:
        left = f"{round(seconds / 60)} min"
    elif seconds < 172_800:
        left = f"{seconds / 3600:.1f} h"
    else:
        left = f"{seconds / 86_400:.1f} days"
    return f"{stamp} (in {left})"


def describe_reservation(conflict: HookConflict, now: datetime) -> str:
    """``pattern 'src/**', expires …, task jp-a3f8, reason "…"``."""
    parts = [f"pattern '{conflict.pattern}'", f"expires {format_expiry(conflict.expires_at, now)}"]
    if conflict.task_id:
        parts.append(f"task {conflict.task_id}")
    if conflict.reason:
        parts.append(f'reason "{conflict.reason}"')
    return ", ".join(parts)


def describe_conflict(
    verdict: PathVerdict, conflict: HookConflict, now: datetime, *, committer: str | None, mode: HookMode
) -> str:
    """One line about one reservation covering one staged path."""
    base = (
        f"{verdict.label()} is covered by {conflict.holder}'s {kind_of(conflict)} reservation "
        f"({describe_reservation(conflict, now)})"
    )
    if conflict.blocking:
        return (
            f"{base}; ask {conflict.holder} to release it, wait for it to expire, or unstage the path "
            f"(git restore --staged -- {shlex.quote(verdict.path) if verdict.path.isprintable() else '<path>'})"
        )
    if conflict.exclusive and committer is None:
        return f"{base}; it would block an agent's commit — coordinate with {conflict.holder}"
    if conflict.exclusive and mode is HookMode.WARN:
        return f"{base}; warn mode, so it does not block — coordinate with {conflict.holder}"
    return f"{base}; not blocking — coordinate with {conflict.holder} before pushing"
