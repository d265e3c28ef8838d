"""The DataLayer: durable storage behind every service (embedded SQLite by default)."""

from __future__ import annotations

from pathlib import Path

from jetpack.store.migrations import migrate
from jetpack.store.port import (
    ConstraintViolation,
    DataLayer,
    GuardFailed,
    Row,
    Statement,
    StoreBusy,
    StoreError,
    expect,
)
from jetpack.store.sqlite import SQLiteDataLayer

__all__ = [
    "ConstraintViolation",
    "DataLayer",
    "GuardFailed",
    "Row",
    "SQLiteDataLayer",
    "Statement",
    "StoreBusy",
    "StoreError",
    "expect",
    "open_store",
]


def open_store(path: str | Path) -> DataLayer:
    """Open (creating if needed) the embedded database at ``path`` and bring its schema up to date."""
    store = SQLiteDataLayer(path)
    migrate(store)
    return store
