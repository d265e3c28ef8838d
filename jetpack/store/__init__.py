"""The DataLayer: durable storage behind every service (embedded SQLite by default, or a libSQL server)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from jetpack.store.migrations import migrate
from jetpack.store.port import (
    ConstraintViolation,
    DataLayer,
    GuardFailed,
    Row,
    Statement,
    StoreBusy,
    StoreError,
    StoreFeatures,
    StoreUnreachable,
    expect,
    is_remote_url,
)
from jetpack.store.sqlite import SQLiteDataLayer

if TYPE_CHECKING:
    from jetpack.store.libsql import LibSQLDataLayer


def __getattr__(name: str) -> Any:
    if name == "LibSQLDataLayer":  # imported on demand: the HTTP client costs ~70 ms at start-up
        from jetpack.store.libsql import LibSQLDataLayer

        return LibSQLDataLayer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ConstraintViolation",
    "DataLayer",
    "GuardFailed",
    "LibSQLDataLayer",
    "Row",
    "SQLiteDataLayer",
    "Statement",
    "StoreBusy",
    "StoreError",
    "StoreFeatures",
    "StoreUnreachable",
    "expect",
    "is_remote_url",
    "open_store",
]


def open_store(location: str | Path, *, auth_token: str | None = None) -> DataLayer:
    """Open the database at ``location`` and bring its schema up to date.

    A ``libsql://``, ``https://`` or ``http://`` URL selects the libSQL server adapter (with
    ``auth_token`` as its bearer token); anything else is a file for the embedded adapter,
    created if needed."""
    store: DataLayer
    if isinstance(location, str) and is_remote_url(location):
        from jetpack.store.libsql import LibSQLDataLayer  # its HTTP client loads only when used

        store = LibSQLDataLayer(location, auth_token)
    else:
        store = SQLiteDataLayer(location)
    try:
        migrate(store)
    except BaseException:
        store.close()
        raise
    return store
