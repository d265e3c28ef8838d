"""The embedded SQLite DataLayer: pragmas, multi-process migration, waiting for the write lock.

What every adapter must do is in test_datalayer.py (run on SQLite and on tursodb)."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlean

from jetpack.store import (
    SQLiteDataLayer,
    Statement,
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


# --- checkpoints ----------------------------------------------------------------------------------------


def _wal_frames(store: SQLiteDataLayer) -> int:
    """Frames in the WAL now (a PASSIVE checkpoint reports them)."""
    return int(store.query("PRAGMA wal_checkpoint(PASSIVE)")[0]["log"])


def _fill_wal(store: SQLiteDataLayer, rows: int) -> None:
    """One transaction writing ``rows`` pages or so (a 3,000-byte row fills most of a page)."""
    store.write([Statement("INSERT INTO filler(blob) VALUES (randomblob(3000))", {}) for _ in range(rows)])


def _server_store(path: Path) -> SQLiteDataLayer:
    """A store whose WAL only our checkpointer copies back (as in a server)."""
    store = SQLiteDataLayer(path)
    store.execute("CREATE TABLE filler(id INTEGER PRIMARY KEY, blob BLOB)")
    store.query("PRAGMA wal_autocheckpoint=0")
    return store


def _reader_behind(store: SQLiteDataLayer, path: Path) -> Any:
    """Another connection holding a snapshot older than the WAL's end (until it commits)."""
    reader = sqlean.connect(str(path), isolation_level=None, check_same_thread=False)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM filler").fetchone()
    store.execute("INSERT INTO filler(blob) VALUES (randomblob(3000))")
    return reader


def test_a_long_wal_starts_over_once_a_reader_that_held_it_back_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under steady load some reader always holds an old snapshot, so a PASSIVE checkpoint never
    copies everything and the WAL grew without end. The checkpointer waits for such readers (in
    the writers' queue) so that the next write starts the WAL from its beginning."""
    monkeypatch.setattr("jetpack.store.sqlite._RESTART_WAIT_MS", 10_000)  # a slow CI machine is not a failure
    store = _server_store(tmp_path / "j.db")
    _fill_wal(store, 1200)
    reader = _reader_behind(store, tmp_path / "j.db")
    ended = threading.Event()

    def leave_soon() -> None:
        time.sleep(0.2)
        reader.execute("COMMIT")
        ended.set()

    leaving = threading.Thread(target=leave_soon)
    leaving.start()
    state = store.checkpoint()
    leaving.join()
    assert ended.is_set()
    assert state.restarted and state.copied == state.frames >= 1200

    store.execute("INSERT INTO filler(blob) VALUES (randomblob(3000))")
    assert _wal_frames(store) < 10  # started over rather than appended at frame 1,200+
    reader.close()
    store.close()


def test_a_reader_that_outlasts_the_wait_makes_the_next_try_wait_for_a_longer_wal(tmp_path: Path) -> None:
    store = _server_store(tmp_path / "j.db")
    _fill_wal(store, 1200)
    reader = _reader_behind(store, tmp_path / "j.db")
    first = store.checkpoint()  # the reader stays: writers were held up for the wait, then released
    assert not first.restarted and first.frames > 1200
    second = store.checkpoint()  # 1,200 frames is now short of the doubled threshold: no wait at all
    assert not second.restarted and store._restart_after == 2000
    reader.execute("COMMIT")
    _fill_wal(store, 3000)
    assert store.checkpoint().restarted and store._restart_after == 1000
    reader.close()
    store.close()


def test_a_short_wal_is_only_copied_back(tmp_path: Path) -> None:
    store = _server_store(tmp_path / "j.db")
    _fill_wal(store, 20)
    state = store.checkpoint()
    assert not state.restarted and state.copied == state.frames >= 20
    store.close()


def test_one_process_at_a_time_checkpoints(tmp_path: Path) -> None:
    first, second = SQLiteDataLayer(tmp_path / "j.db"), SQLiteDataLayer(tmp_path / "j.db")
    assert first._become_checkpointer()
    assert not second._become_checkpointer()  # the lock file is held: the other one checkpoints
    first.close()  # exiting (or crashing) frees it
    assert second._become_checkpointer()
    second.close()
