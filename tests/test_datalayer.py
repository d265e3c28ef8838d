"""The DataLayer contract, on both adapters: migrations, atomic batches, guards, RETURNING rows,
typed values, named parameters, and what the engine offers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from libsql_server import start_tursodb

from jetpack.store import (
    ConstraintViolation,
    DataLayer,
    GuardFailed,
    LibSQLDataLayer,
    SQLiteDataLayer,
    Statement,
    StoreError,
    expect,
    open_store,
)
from jetpack.store.migrations import available_migrations, migrate

pytestmark = pytest.mark.both_adapters  # the embedded file and a real tursodb server


@pytest.fixture
def empty_location(datalayer_kind: str, tmp_path: Path) -> Iterator[str]:
    """Where a database with no schema yet lives: a file path, or the URL of a fresh tursodb."""
    if datalayer_kind == "sqlite":
        yield str(tmp_path / "empty.db")
        return
    server = start_tursodb(tmp_path / "empty.db")
    yield server.url
    server.stop()


def unmigrated(location: str) -> DataLayer:
    return LibSQLDataLayer(location) if location.startswith("http") else SQLiteDataLayer(location)


def test_migrations_apply_once_and_record_their_version(empty_location: str) -> None:
    store = unmigrated(empty_location)
    first = migrate(store)
    assert first == [m.version for m in available_migrations()]
    assert migrate(store) == []
    assert store.schema_version() == max(first)
    store.close()


def test_concurrent_first_start_migrates_exactly_once(empty_location: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            open_store(empty_location).close()
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    store = unmigrated(empty_location)
    rows = store.query("SELECT version FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in rows] == [m.version for m in available_migrations()]
    store.close()


def test_a_database_from_a_newer_jetpack_is_refused_clearly(store: DataLayer) -> None:
    store.execute("INSERT INTO schema_migrations(version, name, applied_at) VALUES (999, 'future', 0)")
    with pytest.raises(StoreError, match="newer than this Jetpack"):
        migrate(store)


def test_write_batch_is_atomic_when_a_statement_violates_a_constraint(store: DataLayer) -> None:
    store.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)")
    with pytest.raises(ConstraintViolation) as raised:
        store.write(
            [
                Statement("INSERT INTO kv VALUES ('a', '1')"),
                Statement("INSERT INTO kv VALUES ('b', '2')"),
                Statement("INSERT INTO kv VALUES ('a', '3')"),
            ]
        )
    assert raised.value.statement_index == 2
    assert store.query("SELECT count(*) AS n FROM kv")[0]["n"] == 0


def test_a_failing_statement_is_a_store_error_and_changes_nothing(store: DataLayer) -> None:
    store.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)")
    with pytest.raises(StoreError, match="no_such_table"):
        store.write([Statement("INSERT INTO kv VALUES ('a', '1')"), Statement("DELETE FROM no_such_table")])
    assert store.query("SELECT count(*) AS n FROM kv")[0]["n"] == 0
    store.execute("INSERT INTO kv VALUES ('a', '1')")  # the failed batch left no transaction open
    assert store.query("SELECT count(*) AS n FROM kv")[0]["n"] == 1


def test_guard_aborts_the_batch_and_names_its_statement(store: DataLayer) -> None:
    store.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)")
    with pytest.raises(GuardFailed) as raised:
        store.write(
            [
                Statement("INSERT INTO kv VALUES ('a', '1')"),
                expect("(SELECT count(*) FROM kv) = :n", {"n": 5}),
                Statement("INSERT INTO kv VALUES ('b', '2')"),
            ]
        )
    assert raised.value.statement_index == 1
    assert store.query("SELECT count(*) AS n FROM kv")[0]["n"] == 0
    store.write([Statement("INSERT INTO kv VALUES ('a', '1')"), expect("(SELECT count(*) FROM kv) = 1")])
    assert store.query("SELECT count(*) AS n FROM kv")[0]["n"] == 1


def test_returning_rows_come_back_per_statement(store: DataLayer) -> None:
    store.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)")
    results = store.write(
        [
            Statement("INSERT INTO kv VALUES (:k, :v) RETURNING k", {"k": "a", "v": "1"}),
            Statement("INSERT INTO kv VALUES (:k, :v)", {"k": "b", "v": "2"}),
            Statement("INSERT INTO kv VALUES (:k, :v)", {"k": "c", "v": "3"}),
            Statement("UPDATE kv SET v = 'x' WHERE k = 'zzz' RETURNING k"),
        ]
    )
    assert results == [[{"k": "a"}], [], [], []]


def test_deferred_foreign_keys_are_checked_at_commit(store: DataLayer) -> None:
    with pytest.raises(ConstraintViolation):
        store.execute(
            "INSERT INTO dependencies(task_id, depends_on, kind, created_by, created_at) "
            "VALUES ('jp-none', 'jp-gone', 'blocks', 'x', 0)"
        )
    assert store.query("SELECT count(*) AS n FROM dependencies")[0]["n"] == 0


def test_values_keep_their_types(store: DataLayer) -> None:
    values = {
        "big": 2**62 + 1,
        "negative": -7,
        "real": 0.1,
        "text": "naïve 'quoted' \"text\" ☃",
        "blob": bytes(range(256)),
        "empty": b"",
        "absent": None,
    }
    store.execute("CREATE TABLE typed (big, negative, real, text, blob, empty, absent)")
    store.execute(
        "INSERT INTO typed VALUES (:big, :negative, :real, :text, :blob, :empty, :absent)",
        values,
    )
    assert store.query("SELECT * FROM typed") == [values]
    assert store.query("SELECT typeof(big) AS b, typeof(blob) AS x, typeof(empty) AS e FROM typed") == [
        {"b": "integer", "x": "blob", "e": "blob"}
    ]
    assert store.query("SELECT :flag AS flag", {"flag": True}) == [{"flag": 1}]


def test_named_parameters_bind_by_name_wherever_they_appear(store: DataLayer) -> None:
    rows = store.query(
        "SELECT :b AS b, ':a inside a string' AS s, :a AS a, -- a comment with :c\n :b + :a AS sum",
        {"a": 1, "b": 2, "unused": 3},
    )
    assert rows == [{"b": 2, "s": ":a inside a string", "a": 1, "sum": 3}]
    assert store.query("SELECT ? AS x, ? AS y", [5, "five"]) == [{"x": 5, "y": "five"}]
    with pytest.raises(StoreError):
        store.query("SELECT :missing AS m", {"other": 1})


def test_a_wrong_sized_vector_is_refused_by_the_check(store: DataLayer) -> None:
    insert = (
        "INSERT INTO memories(layer, content, created_at, updated_at, content_hash, model, embedding) "
        "VALUES ('episodic', 'x', 0, 0, 'h', 'm', :embedding)"
    )
    with pytest.raises(ConstraintViolation, match="CHECK"):
        store.execute(insert, {"embedding": np.zeros(383, dtype=np.float32).tobytes()})
    store.execute(insert, {"embedding": np.zeros(384, dtype=np.float32).tobytes()})
    assert store.query("SELECT length(embedding) AS n FROM memories") == [{"n": 1536}]


def test_one_store_is_shared_safely_between_threads(store: DataLayer) -> None:
    store.execute("CREATE TABLE n (i INTEGER)")
    errors: list[BaseException] = []

    def insert_many() -> None:
        try:
            for i in range(50):
                store.execute("INSERT INTO n VALUES (:i)", {"i": i})
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=insert_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert store.query("SELECT count(*) AS n FROM n")[0]["n"] == 200


def test_features_say_what_the_engine_offers(store: DataLayer, datalayer_kind: str) -> None:
    features = store.features()
    assert features.kind == datalayer_kind
    if datalayer_kind == "sqlite":
        assert features.full_text and features.vectors == "sqlite-vec"
        assert features.summary()["full_text_search"] == "fts5"
    else:  # tursodb has no FTS5 and no sqlite-vec; it has libSQL's vector functions
        assert not features.full_text and features.vectors == "libsql"
        assert features.summary()["full_text_search"].startswith("scan")


def test_another_store_sees_committed_writes(store: DataLayer, another_store: Callable[[], DataLayer]) -> None:
    other = another_store()
    store.execute("INSERT INTO meta(key, value) VALUES ('seen', 'yes')")
    assert other.query("SELECT value FROM meta WHERE key = 'seen'") == [{"value": "yes"}]
