"""Versioned schema migrations in plain SQL, applied through the DataLayer port.

Files are ``migrations/NNNN_name.sql``. Each runs as one atomic write batch together with
its ``schema_migrations`` row, so a crash never leaves half a migration, and two processes
starting at once cannot both apply it (the loser's batch fails and it re-reads the version).
A migration marked ``-- requires: fts5`` (or ``vec``) builds an optional index: engines without
the feature record it as skipped, and the services fall back to what every engine has.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from importlib import resources

import sqlean

from jetpack.store.port import DataLayer, Statement, StoreBusy, StoreError, StoreUnreachable

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]
    requires: frozenset[str] = frozenset()  # engine features, from a leading "-- requires: a, b" line


_REQUIRES = re.compile(r"^--\s*requires:\s*(.+)$", re.MULTILINE)

# How to tell whether the engine has a feature: a statement that fails without it.
_FEATURE_PROBES = {
    "fts5": ["CREATE VIRTUAL TABLE fts5_probe USING fts5(x)", "DROP TABLE fts5_probe"],
    "vec": ["SELECT vec_version()"],  # sqlite-vec, loaded into every embedded connection when installed
}


def engine_supports(store: DataLayer, feature: str) -> bool:
    try:
        store.write([Statement(sql) for sql in _FEATURE_PROBES[feature]])
    except (StoreBusy, StoreUnreachable):
        raise  # not an answer about the engine
    except StoreError:
        return False
    return True


def split_statements(script: str) -> list[str]:
    """Split a script into complete statements (trigger bodies with inner ``;`` stay whole)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer += line
        if sqlean.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL statement at end of migration: {buffer.strip()[:80]!r}")
    return statements


def available_migrations() -> list[Migration]:
    folder = resources.files("jetpack.store") / "migrations"
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            text = entry.read_text()
            requires = _REQUIRES.search(text)
            features = frozenset(f.strip() for f in requires[1].split(",")) if requires else frozenset()
            found.append(Migration(int(match[1]), match[2], tuple(split_statements(text)), features))
    found.sort(key=lambda m: m.version)
    return found


_BOOKKEEPING = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
)


def migrate(store: DataLayer) -> list[int]:
    """Apply pending migrations; return the versions this call applied."""
    pending = available_migrations()
    current = store.schema_version()
    if current > pending[-1].version:
        raise StoreError(
            f"database {store.location} has schema v{current}, newer than this Jetpack knows "
            f"(v{pending[-1].version}); upgrade Jetpack to use it"
        )
    if current == pending[-1].version:
        return []  # the common case: a read, no write lock taken
    store.execute(_BOOKKEEPING)
    applied: list[int] = []
    for migration in pending:
        if store.schema_version() >= migration.version:
            continue
        missing = sorted(f for f in migration.requires if not engine_supports(store, f))
        # A migration the engine cannot run (an optional index) is recorded as skipped: the
        # services check for what it would have created and fall back (e.g. search scans).
        name = f"{migration.name} (skipped: no {', '.join(missing)})" if missing else migration.name
        batch = [] if missing else [Statement(sql) for sql in migration.statements]
        batch.append(
            Statement(
                "INSERT INTO schema_migrations(version, name, applied_at) VALUES (:v, :n, :at)",
                {"v": migration.version, "n": name, "at": int(time.time() * 1000)},
            )
        )
        try:
            store.write(batch)
        except StoreError:
            # Another process may have applied it between our check and our write.
            if store.schema_version() >= migration.version:
                continue
            raise
        applied.append(migration.version)
    return applied
