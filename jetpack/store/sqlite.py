"""Embedded SQLite adapter of the DataLayer port (the default: ``.jetpack/jetpack.db``).

Uses ``sqlean`` (a drop-in ``sqlite3`` with a current SQLite and extension loading), one
connection per thread, WAL so readers never block the writer, and ``BEGIN IMMEDIATE`` so a
write transaction takes the write lock up front instead of failing half-way on an upgrade.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import random
import sys
import threading
import time

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlean

from jetpack.store.features import detect_features
from jetpack.store.port import (
    ConstraintViolation,
    GuardFailed,
    Params,
    Row,
    Statement,
    StoreBusy,
    StoreError,
    StoreFeatures,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# A write transaction here lasts tens of microseconds, so a blocked writer usually gets in within
# a fraction of a millisecond. SQLite's own busy handler sleeps 1, 2, 5, 10, 15… ms between tries,
# which turns a brief wait into a long one; so its timeout is kept short and this loop, with its
# finer steps (jittered), does the waiting, up to ``retry_seconds``.
_RETRY_SLEEPS = (0.0001, 0.0002, 0.0003, 0.0005, 0.0008, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.05)
DEFAULT_BUSY_TIMEOUT_MS = 1
# With background checkpoints, commits never pay for copying the WAL back into the database. One
# process at a time checkpoints (it holds the lock file ``<db>-checkpoint``); the others look every
# few seconds whether it went away. A PASSIVE checkpoint copies only what no reader still needs, so
# under steady load it never catches up and the WAL would grow without end (gigabytes a minute with
# 50 busy servers, every write then allocating and zeroing new file blocks). Once the WAL holds
# ``_RESTART_AFTER_FRAMES`` the checkpointer takes its turn in the writers' queue and waits, briefly,
# for readers to leave the WAL, so that the next writer starts it over from its beginning. When a
# reader outlasts the wait, the next try waits for a WAL twice as long (writers are held up at most
# ``_RESTART_WAIT_MS`` per try, and ever more rarely while such readers keep coming).
_CHECKPOINT_EVERY_SECONDS = 0.5
_CHECKPOINTER_RETRY_SECONDS = 5.0
_RESTART_AFTER_FRAMES = 1000  # ~4 MB of 4 KB pages
_RESTART_AFTER_FRAMES_MAX = 64_000  # ~256 MB
_RESTART_WAIT_MS = 100
_WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024  # a WAL grown larger by a burst is truncated to this on restart


def _rows(cursor: Any) -> list[Row]:
    if cursor.description is None:
        return []
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


@functools.cache
def _sqlite_vec_library() -> str | None:
    """The sqlite-vec extension's file (without its suffix, as SQLite wants it), when installed.

    Found without importing the ``sqlite_vec`` package, whose import pulls in numpy (~35 ms of every
    server's start); its ``loadable_path()`` is this same ``vec0`` beside its ``__init__``.
    """
    spec = importlib.util.find_spec("sqlite_vec")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    return str(folder / "vec0") if any(folder.glob("vec0.*")) else None


def _load_sqlite_vec(conn: Any) -> None:
    """Load sqlite-vec (vector search for memory) into a connection, when it is installed."""
    library = _sqlite_vec_library()
    if library is None:  # memory then searches without it (slower); migration 5 is skipped
        return
    conn.enable_load_extension(True)
    try:
        conn.load_extension(library)
    finally:
        conn.enable_load_extension(False)


def _runs(statements: Sequence[Statement]) -> list[tuple[int, list[Statement]]]:
    """Group consecutive statements with the same SQL (and no RETURNING) for executemany."""
    groups: list[tuple[int, list[Statement]]] = []
    for index, statement in enumerate(statements):
        if groups and groups[-1][1][0].sql == statement.sql and "RETURNING" not in statement.sql.upper():
            groups[-1][1].append(statement)
        else:
            groups.append((index, [statement]))
    return groups


def _is_busy(error: Exception) -> bool:
    text = str(error).lower()
    return "database is locked" in text or "database is busy" in text or "busy" in text.split(":")[0]


@dataclass(frozen=True)
class WalState:
    """What a checkpoint left: frames in the WAL, frames copied back, whether the WAL starts over."""

    frames: int
    copied: int
    restarted: bool


class SQLiteDataLayer:
    """A file-backed DataLayer. Safe to share between threads; each thread gets a connection."""

    kind = "sqlite"

    def __init__(
        self, path: str | Path, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS, retry_seconds: float = 30.0
    ) -> None:
        self._path = str(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._retry_seconds = retry_seconds
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        self._checkpointer: threading.Thread | None = None
        self._stop = threading.Event()
        self._thread_turn = threading.Lock()
        self._lock_fd: int | None = None
        self._checkpoint_fd: int | None = None
        self._restart_after = _RESTART_AFTER_FRAMES
        if self._path != ":memory:":
            try:
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreError(f"cannot create the directory for database {self._path}: {error}") from error
        if self._path != ":memory:" and fcntl is not None:
            try:
                self._lock_fd = os.open(self._path + "-writer", os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                self._lock_fd = None  # a read-only directory: SQLite's lock alone will do
        conn = self._connection()
        mode = self._with_retry(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
        if mode.lower() != "wal" and self._path != ":memory:":
            raise StoreError(f"could not switch {self._path} to WAL mode (got {mode!r})")

    @property
    def location(self) -> str:
        return self._path

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise StoreError("the DataLayer is closed")
        try:
            conn = sqlean.connect(
                self._path, timeout=self._busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
            )
        except sqlean.Error as error:
            raise StoreError(f"cannot open database {self._path}: {error}") from error
        # Even a pragma can meet a lock (another process recovering or checkpointing the WAL).
        self._with_retry(lambda: self._configure(conn))
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn

    def _configure(self, conn: Any) -> None:
        _load_sqlite_vec(conn)
        conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT_BYTES}")
        if self._checkpointer is not None:
            conn.execute("PRAGMA wal_autocheckpoint=0")

    def checkpoint_in_background(self) -> None:
        """Move WAL checkpoints off the commit path onto a thread of their own (long-lived
        servers). Short-lived processes keep SQLite's automatic checkpoints."""
        if self._checkpointer is not None or self._path == ":memory:":
            return
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="jetpack-checkpoint", daemon=True)
        with self._lock:
            for conn in self._connections:
                conn.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        wait = 0.0
        while not self._stop.wait(wait):
            if self._checkpoint_fd is None and not self._become_checkpointer():
                wait = _CHECKPOINTER_RETRY_SECONDS  # another process checkpoints; look again later
                continue
            wait = _CHECKPOINT_EVERY_SECONDS
            try:
                self.checkpoint()
            except (OSError, StoreError):
                log.debug("background checkpoint skipped", exc_info=True)

    def _become_checkpointer(self) -> bool:
        """Take ``<db>-checkpoint`` if no other process holds it (the kernel frees it when we exit)."""
        if sys.platform == "win32":  # no flock: every process checkpoints
            return True
        try:
            fd = os.open(self._path + "-checkpoint", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._checkpoint_fd = fd
        return True

    def checkpoint(self) -> WalState:
        """Copy the WAL back into the database; once it is long, make the next writer start it over.

        Returns the WAL's state afterwards (frames in it, frames copied back).
        """
        row = self.query("PRAGMA wal_checkpoint(PASSIVE)")[0]
        state = WalState(frames=int(row["log"]), copied=int(row["checkpointed"]), restarted=False)
        if state.frames < self._restart_after:
            return state
        conn = self._connection()
        with self._writer_turn():  # writers queue behind us for the moment readers take to leave
            conn.execute(f"PRAGMA busy_timeout={_RESTART_WAIT_MS}")
            try:
                row = _rows(conn.execute("PRAGMA wal_checkpoint(RESTART)"))[0]
                state = WalState(frames=int(row["log"]), copied=int(row["checkpointed"]), restarted=not row["busy"])
            except sqlean.OperationalError as error:
                if not _is_busy(error):
                    raise StoreError(f"{error} (database {self._path})") from error
            finally:
                conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        self._restart_after = (
            _RESTART_AFTER_FRAMES if state.restarted else min(2 * self._restart_after, _RESTART_AFTER_FRAMES_MAX)
        )
        return state

    def raw_connection(self) -> Any:
        """This thread's underlying connection, for extensions (e.g. sqlite-vec) and diagnostics."""
        return self._connection()

    def query(self, sql: str, params: Params | None = None) -> list[Row]:
        conn = self._connection()
        return self._with_retry(lambda: _rows(conn.execute(sql, params if params is not None else ())))

    def execute(self, sql: str, params: Params | None = None) -> list[Row]:
        return self.write([Statement(sql, params if params is not None else {})])[0]

    def write(self, statements: Sequence[Statement]) -> list[list[Row]]:
        conn = self._connection()
        with self._writer_turn():
            return self._with_retry(lambda: self._write_once(conn, statements))

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """Wait for our turn to write in a queue the kernel keeps (a lock file next to the database).

        SQLite lets a blocked writer only sleep and retry: with dozens of processes on two CPUs most
        retries fail and each costs a context switch. Writers that queue on a blocking lock sleep
        until it is their turn. The lock goes away with its holder, crash included; SQLite's own
        lock and the retry loop stay underneath for any writer that does not use this file.
        """
        if self._lock_fd is None:
            yield
            return
        with self._thread_turn:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _write_once(self, conn: Any, statements: Sequence[Statement]) -> list[list[Row]]:
        groups = _runs(statements)  # planned before the write lock is taken
        raw: list[tuple[list[str], list[Any]] | None] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for index, group in groups:
                try:
                    if len(group) == 1:
                        cursor = conn.execute(group[0].sql, group[0].params)
                        raw.append(
                            None
                            if cursor.description is None
                            else ([d[0] for d in cursor.description], cursor.fetchall())
                        )
                    else:
                        conn.executemany(group[0].sql, [s.params for s in group])
                        raw.extend(None for _ in group)
                except sqlean.IntegrityError as error:
                    message = str(error)
                    if "write_guard" in message:
                        raise GuardFailed(message, index) from error
                    raise ConstraintViolation(message, index) from error
            try:
                conn.execute("COMMIT")
            except sqlean.IntegrityError as error:  # deferred foreign keys are checked at COMMIT
                raise ConstraintViolation(str(error), len(statements)) from error
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        # Rows become dicts only after COMMIT: the write lock is held no longer than needed.
        return [[] if r is None else [dict(zip(r[0], row, strict=True)) for row in r[1]] for r in raw]

    def _with_retry(self, operation: Callable[[], T]) -> T:
        deadline = time.monotonic() + self._retry_seconds
        attempt = 0
        while True:
            try:
                return operation()
            except sqlean.OperationalError as error:
                if not _is_busy(error):
                    raise StoreError(f"{error} (database {self._path})") from error
                if time.monotonic() >= deadline:
                    raise StoreBusy(
                        f"database {self._path} stayed locked for {self._retry_seconds:.0f}s; "
                        "another process holds a long write transaction"
                    ) from error
                sleep = _RETRY_SLEEPS[min(attempt, len(_RETRY_SLEEPS) - 1)]
                time.sleep(sleep * (0.5 + random.random()))
                attempt += 1
            except sqlean.DatabaseError as error:
                if isinstance(error, sqlean.IntegrityError):
                    raise
                raise StoreError(f"{error} (database {self._path})") from error

    def schema_version(self) -> int:
        rows = self.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
        if not rows:
            return 0
        return int(self.query("SELECT coalesce(max(version), 0) AS v FROM schema_migrations")[0]["v"])

    def features(self) -> StoreFeatures:
        version = self.query("SELECT sqlite_version() AS v")[0]["v"]
        return detect_features(self, kind=self.kind, engine=f"SQLite {version}", vector_functions=False)

    def close(self) -> None:
        self._stop.set()
        if self._checkpointer is not None and self._checkpointer is not threading.current_thread():
            self._checkpointer.join(timeout=5)
        for fd in (self._lock_fd, self._checkpoint_fd):
            if fd is not None:
                os.close(fd)
        self._lock_fd = self._checkpoint_fd = None
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            try:
                conn.close()
            except sqlean.Error:  # pragma: no cover - closing a broken connection
                log.debug("ignored error closing connection", exc_info=True)
        self._local = threading.local()
