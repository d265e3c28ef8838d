"""The DataLayer port: the one interface every service uses to reach storage.

It is deliberately small (query, execute, atomic write batch) because the remote libSQL
server we must also support speaks Hrana over HTTP, which offers statement batches but no
interactive transactions. Services therefore express each write as a batch of set-based,
guarded statements whose outcome they read from ``RETURNING`` rows, never from affected-row
counts (the libSQL server leaves those at zero).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

_REMOTE_URL = re.compile(r"^(libsql|https?)://", re.IGNORECASE)

Row = dict[str, Any]
Params = Mapping[str, Any] | Sequence[Any]


@dataclass(frozen=True, slots=True)
class Statement:
    """One SQL statement with its parameters (named ``:name`` or positional ``?``)."""

    sql: str
    params: Params = field(default_factory=dict)


def expect(condition_sql: str, params: Params | None = None) -> Statement:
    """A statement that aborts its whole batch unless ``condition_sql`` holds.

    It inserts a row that violates the ``write_guards`` CHECK constraint exactly when the
    condition is false, so the guard works identically on every SQLite-compatible engine.
    The batch then raises :class:`GuardFailed` naming this statement's index.
    """
    return Statement(
        f"INSERT INTO write_guards(ok) SELECT 0 WHERE NOT ({condition_sql})",
        params if params is not None else {},
    )


class StoreError(Exception):
    """A storage failure the caller did not cause (I/O, corruption, engine errors)."""


class ConstraintViolation(StoreError):
    """A statement in a write batch broke a UNIQUE/CHECK/NOT NULL constraint; nothing was written.

    ``statement_index`` is the statement's position in the batch, or the batch's length when a
    deferred foreign key failed at COMMIT."""

    def __init__(self, message: str, statement_index: int) -> None:
        super().__init__(message)
        self.statement_index = statement_index


class GuardFailed(ConstraintViolation):
    """An :func:`expect` guard in a write batch did not hold; nothing was written."""


class StoreBusy(StoreError):
    """The database stayed locked by other writers past the retry budget."""


class StoreUnreachable(StoreError):
    """The database server could not be reached (refused, timed out, connection lost).

    The message starts "DataLayer unreachable" and says whether a write may have been applied:
    a write is never retried once its request may have reached the server.
    """


@dataclass(frozen=True, slots=True)
class StoreFeatures:
    """What a database offers beyond the SQL every engine shares: for health checks, and for
    the services that pick a search strategy."""

    kind: str  # "sqlite" (embedded file) or "libsql" (a libSQL/Turso server over HTTP)
    engine: str  # e.g. "SQLite 3.50.4"
    full_text: bool  # the FTS5 indexes over mail and memories exist; without them search scans
    vectors: str  # nearest memories by "sqlite-vec", "libsql" (vector_distance_cos) or "scan"

    def summary(self) -> dict[str, str]:
        """For /healthz: plain words, never the location."""
        return {
            "kind": self.kind,
            "engine": self.engine,
            "full_text_search": "fts5" if self.full_text else "scan (no FTS5 index in this database)",
            "vector_search": self.vectors,
        }


class DataLayer(Protocol):
    """Durable storage shared by every Jetpack process."""

    @property
    def location(self) -> str:
        """Where the data lives (a file path or a server URL), for messages and health checks."""
        ...

    def query(self, sql: str, params: Params | None = None) -> list[Row]:
        """Run a read-only statement and return its rows as dicts."""
        ...

    def execute(self, sql: str, params: Params | None = None) -> list[Row]:
        """Run one write statement atomically and return its ``RETURNING`` rows."""
        ...

    def write(self, statements: Sequence[Statement]) -> list[list[Row]]:
        """Run statements as one atomic transaction; return each statement's rows.

        Raises ConstraintViolation/GuardFailed (nothing written), StoreBusy, or StoreUnreachable.
        """
        ...

    def schema_version(self) -> int:
        """The highest migration version applied to this database."""
        ...

    def features(self) -> StoreFeatures:
        """What this database offers (full-text indexes, vector search) and which engine it is."""
        ...

    def close(self) -> None:
        """Release connections. The object must not be used afterwards."""
        ...


def is_remote_url(location: str) -> bool:
    """Whether ``location`` names a libSQL server (``libsql://``, ``https://``, ``http://``)."""
    return bool(_REMOTE_URL.match(location))
