"""The embedded SQLite DataLayer: pragmas, multi-process migration, waiting for the write lock.

What every adapter must do is in test_datalayer.py (run on SQLite and on tursodb)."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

import pytest
import sqlean

from jetpack.store import (
    SQLiteDataLayer,
    StoreBusy,
    open_store,
)
from jetpack.store.migrations import available_migrations, split_statements


def test_connections_use_wal_normal_sync_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    store = open_store(tmp_path / "j.db")
    assert store.query("PRAGMA journal_mode")[0]["journal_mode"] == "wal"
    assert store.query("PRAGMA synchronous")[0]["synchronous"] == 1  # NORMAL
    assert store.query("PRAGMA foreign_keys")[0]["foreign_keys"] == 1
    assert store.query("PRAGMA busy_timeout")[0]["timeout"] == 1  # short: our retry loop waits in finer steps
    store.close()


def test_open_store_creates_parent_directories(tmp_path: Path) -> None:
    store = open_store(tmp_path / "a" / "b" / "jetpack.db")
    assert (tmp_path / "a" / "b" / "jetpack.db").exists()
    store.close()


def _migrate_in_process(path: str) -> None:
    store = open_store(path)
    store.close()


def test_concurrent_first_start_in_processes_migrates_exactly_once(tmp_path: Path) -> None:
    path = str(tmp_path / "j.db")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_migrate_in_process, args=(path,)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    store = SQLiteDataLayer(path)
    rows = store.query("SELECT version FROM schema_migrations")
    assert [r["version"] for r in rows] == [m.version for m in available_migrations()]
    store.close()


def test_split_statements_keeps_trigger_bodies_whole() -> None:
    script = """
    -- a comment
    CREATE TABLE a (x);
    CREATE TRIGGER t AFTER INSERT ON a BEGIN
        INSERT INTO a VALUES (1);
        INSERT INTO a VALUES (2);
    END;
    """
    statements = split_statements(script)
    assert len(statements) == 2
    assert statements[1].count("INSERT INTO a VALUES") == 2


def test_writer_waits_for_another_connections_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    store = open_store(path)
    store.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)")
    other = sqlean.connect(str(path), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO kv VALUES ('held', '1')")
    releaser = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    releaser.start()
    store.execute("INSERT INTO kv VALUES ('mine', '2')")
    releaser.join()
    assert {r["k"] for r in store.query("SELECT k FROM kv")} == {"held", "mine"}
    other.close()
    store.close()


def test_writer_gives_up_with_store_busy_after_its_retry_budget(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    open_store(path).close()
    store = SQLiteDataLayer(path, busy_timeout_ms=50, retry_seconds=0.3)
    store.execute("CREATE TABLE kv (k TEXT PRIMARY KEY)")
    other = sqlean.connect(str(path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(StoreBusy, match="stayed locked"):
        store.execute("INSERT INTO kv VALUES ('x')")
    assert time.monotonic() - started >= 0.3
    other.execute("ROLLBACK")
    other.close()
    store.close()
