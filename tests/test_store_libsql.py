"""The libSQL server adapter against a real tursodb: URLs and credentials, a server that dies and
comes back, answers lost on the way back, and the search fallbacks of an engine without FTS5."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from libsql_server import LossyProxy, TursoServer

from jetpack.actor import Actor
from jetpack.agents import AgentRegistry
from jetpack.clock import ManualClock
from jetpack.config import Settings, TaskSettings, load_settings
from jetpack.errors import ConfigError
from jetpack.mail import MailContext, NewMessage, Sender, search_mail, send_mail
from jetpack.memory.context import MemoryContext
from jetpack.memory.embedders import create_embedder
from jetpack.memory.index import LibSQLVectorIndex
from jetpack.memory.model import Layer, NewMemory
from jetpack.memory.recall import recall
from jetpack.memory.writing import remember
from jetpack.server import IdentityDefaults, build_parts, create_server
from jetpack.store import DataLayer, LibSQLDataLayer, SQLiteDataLayer, Statement, StoreUnreachable, open_store
from jetpack.store.libsql import parse_url
from jetpack.tasks import NewTask, QueueContext, claim_task, create_tasks

SECRET = "s3cret-token-value"


@pytest.fixture
def server(libsql_server: TursoServer) -> TursoServer:
    return libsql_server


@pytest.fixture
def impatient(server: TursoServer) -> Iterator[LibSQLDataLayer]:
    """A store that gives up on an unreachable server after a fraction of a second."""
    store = LibSQLDataLayer(server.url, retry_seconds=0.3)
    yield store
    store.close()


@pytest.fixture
def proxy(server: TursoServer) -> Iterator[LossyProxy]:
    lossy = LossyProxy(server)
    yield lossy
    lossy.close()


def test_libsql_urls_become_https_and_never_show_their_credentials() -> None:
    assert parse_url("libsql://db-me.turso.io") == ("https://db-me.turso.io", "libsql://db-me.turso.io", None)
    assert parse_url(f"libsql://db.example:8080/?authToken={SECRET}&tls=0") == (
        "http://db.example:8080",
        "libsql://db.example:8080",
        SECRET,
    )
    assert parse_url("https://user:pw@db.example/base/")[1] == "https://db.example/base"


def test_settings_pick_the_server_from_jetpack_db_url_and_keep_the_token_out_of_sight(project: Path) -> None:
    environ = {
        "JETPACK_PROJECT_DIR": str(project),
        "JETPACK_DB_URL": f"libsql://db-me.turso.io?authToken={SECRET}",
        "JETPACK_DB_AUTH_TOKEN": SECRET,
    }
    settings = load_settings(environ)
    assert settings.db_location == environ["JETPACK_DB_URL"]
    assert settings.db_auth_token == SECRET
    assert settings.database == "libsql://db-me.turso.io"
    assert SECRET not in repr(settings) and SECRET not in settings.database
    as_file = load_settings({"JETPACK_PROJECT_DIR": str(project), "JETPACK_DB_URL": "elsewhere/j.db"})
    assert as_file.db_url is None and as_file.db_location == project / "elsewhere" / "j.db"
    with pytest.raises(ConfigError, match="wss:// is not supported"):
        load_settings({"JETPACK_PROJECT_DIR": str(project), "JETPACK_DB_URL": "wss://db-me.turso.io"})


def test_open_store_picks_the_adapter_from_the_location(server: TursoServer, tmp_path: Path) -> None:
    remote, local = open_store(server.url), open_store(tmp_path / "j.db")
    assert isinstance(remote, LibSQLDataLayer) and isinstance(local, SQLiteDataLayer)
    assert remote.location == server.url
    remote.close()
    local.close()


def test_the_token_travels_as_a_bearer_header(proxy: LossyProxy) -> None:
    store = LibSQLDataLayer(proxy.url, SECRET)
    assert store.query("SELECT 1 AS one") == [{"one": 1}]
    assert f"authorization: bearer {SECRET}" in proxy.heads[-1].lower()
    assert SECRET not in store.location
    store.close()


def test_a_killed_server_fails_calls_clearly_and_work_resumes_when_it_is_back(
    server: TursoServer, impatient: LibSQLDataLayer
) -> None:
    queue = QueueContext(store=impatient, settings=TaskSettings())
    task = create_tasks(queue, Actor("planner"), [NewTask(title="survives a restart")])[0].id
    server.kill()
    with pytest.raises(StoreUnreachable, match=r"^DataLayer unreachable: .*Nothing was read\.") as read:
        impatient.query("SELECT count(*) AS n FROM tasks")
    assert server.url in str(read.value) and "JETPACK_DB_URL" in str(read.value)
    with pytest.raises(StoreUnreachable, match=r"^DataLayer unreachable: .*Nothing was written\."):
        impatient.execute("INSERT INTO meta(key, value) VALUES ('while', 'down')")
    with pytest.raises(StoreUnreachable, match=r"^DataLayer unreachable: "):
        claim_task(queue, Actor("alice"))
    server.start()  # the same file on the same port
    outcome = claim_task(queue, Actor("alice"))
    assert outcome.task is not None and outcome.task.id == task and outcome.task.attempts == 0
    assert impatient.query("SELECT count(*) AS n FROM meta WHERE key = 'while'") == [{"n": 0}]


def test_a_batch_cut_off_by_a_crash_is_all_or_nothing(server: TursoServer, impatient: LibSQLDataLayer) -> None:
    impatient.execute("CREATE TABLE halves (id INTEGER PRIMARY KEY, side TEXT)")
    written = threading.Event()
    outcome: list[BaseException] = []

    def write_pairs() -> None:
        try:
            for i in range(1_000_000):
                impatient.write(
                    [
                        Statement("INSERT INTO halves VALUES (:id, 'left')", {"id": 2 * i}),
                        Statement("INSERT INTO halves VALUES (:id, 'right')", {"id": 2 * i + 1}),
                    ]
                )
                if i == 20:
                    written.set()
        except StoreUnreachable as error:
            outcome.append(error)
        finally:
            written.set()

    writer = threading.Thread(target=write_pairs)
    writer.start()
    written.wait(60)
    server.kill()  # whatever the writer was doing
    writer.join(60)
    assert outcome and str(outcome[0]).startswith("DataLayer unreachable")
    server.start()
    counts = impatient.query("SELECT side, count(*) AS n FROM halves GROUP BY side ORDER BY side")
    assert len(counts) == 2 and counts[0]["n"] == counts[1]["n"] > 20
    unpaired = "SELECT count(*) AS n FROM halves WHERE id % 2 = 1 AND id - 1 NOT IN (SELECT id FROM halves)"
    assert impatient.query(unpaired) == [{"n": 0}]


def test_a_write_whose_answer_is_lost_is_never_sent_again(server: TursoServer, proxy: LossyProxy) -> None:
    store = LibSQLDataLayer(proxy.url)
    queue = QueueContext(store=store, settings=TaskSettings())
    task = create_tasks(queue, Actor("planner"), [NewTask(title="claimed once")])[0].id
    proxy.lose_batch_answers = 1
    batches = proxy.batches
    with pytest.raises(StoreUnreachable, match="may or may not have been applied") as lost:
        claim_task(queue, Actor("alice"))
    assert "not sent again" in str(lost.value)
    assert proxy.batches == batches + 1
    rows = store.query("SELECT state, assignee, attempts FROM tasks WHERE id = :id", {"id": task})
    assert rows == [{"state": "claimed", "assignee": "alice", "attempts": 0}]  # applied, exactly once
    events = store.query("SELECT count(*) AS n FROM events WHERE task_id = :id AND kind = 'claimed'", {"id": task})
    assert events == [{"n": 1}]
    store.close()


def test_a_read_whose_answer_is_lost_is_asked_again(proxy: LossyProxy) -> None:
    store = LibSQLDataLayer(proxy.url)
    proxy.lose_answers = 2
    assert store.query("SELECT 42 AS answer") == [{"answer": 42}]
    assert proxy.lose_answers == 0
    store.close()


def test_a_write_waits_for_a_server_that_is_not_listening_yet(server: TursoServer) -> None:
    store = LibSQLDataLayer(server.url, retry_seconds=60)
    store.execute("CREATE TABLE once (id INTEGER PRIMARY KEY AUTOINCREMENT, note TEXT)")
    server.kill()
    done: list[object] = []
    writer = threading.Thread(target=lambda: done.append(store.execute("INSERT INTO once(note) VALUES ('x')")))
    writer.start()
    time.sleep(0.3)  # let it find the door closed at least once (the outcome is the same either way)
    server.start()
    writer.join(60)
    assert done == [[]]
    assert store.query("SELECT count(*) AS n FROM once") == [{"n": 1}]  # refused connections sent nothing
    store.close()


def test_an_unreachable_datalayer_is_a_clear_tool_error(
    settings: Settings, server: TursoServer, impatient: LibSQLDataLayer
) -> None:
    import anyio
    from mcp import Client

    async def scenario() -> str:
        parts = build_parts(settings, store=impatient, clock=ManualClock(), identity=IdentityDefaults(name="tester"))
        async with Client(create_server(parts)) as client:
            assert not (await client.call_tool("register_agent", {"name": "tester"})).is_error
            server.kill()
            result = await client.call_tool("claim_task", {})
            assert result.is_error
            return str(result.content[0].text)  # type: ignore[union-attr]

    text = anyio.run(scenario)
    assert "DataLayer unreachable: the libSQL server at" in text  # after the SDK's "Error executing tool …: "
    assert text.endswith("Check that the server is running and that JETPACK_DB_URL points at it, then call again.")


def test_memory_ranks_vectors_on_the_server(store_on_server: DataLayer) -> None:
    ctx = MemoryContext(store=store_on_server, embedder=create_embedder("hash"), clock=ManualClock())
    assert isinstance(ctx.vectors, LibSQLVectorIndex)
    ids = [remember(ctx, "alice", NewMemory(content=text)).id for text in ("alpha beta", "gamma delta", "epsilon")]
    nearest = ctx.vectors.candidates(ctx.embed_one("gamma delta"), list(Layer), 2)
    assert nearest[0] == ids[1] and len(nearest) == 2


def test_recall_matches_exact_words_without_fts5(store_on_server: DataLayer) -> None:
    ctx = MemoryContext(store=store_on_server, embedder=create_embedder("hash"), clock=ManualClock())
    for text in ("the deploy script lives in ops/", "retry_budget caps how long reads wait", "tea is served at four"):
        remember(ctx, "alice", NewMemory(content=text))
    hits = recall(ctx, "retry_budget", k=3)
    assert hits[0].snippet.startswith("retry_budget") and hits[0].keyword_match
    assert [h.keyword_match for h in hits[1:]] == [False] * len(hits[1:])


def test_mail_search_without_fts5_ranks_subject_matches_first_and_marks_the_words(store_on_server: DataLayer) -> None:
    mail = MailContext(store=store_on_server, clock=ManualClock(), live_seconds=60)
    AgentRegistry(store_on_server).remember("bob", [])
    alice = Sender("alice")
    body_match = send_mail(mail, alice, NewMessage(to=["bob"], subject="status", body="the migration failed"))
    subject_match = send_mail(mail, alice, NewMessage(to=["bob"], subject="migration failed", body="see logs"))
    hits = search_mail(mail, "Migration FAILED")
    assert [h.id for h in hits] == [subject_match.id, body_match.id]
    assert hits[1].snippet == "the [migration] [failed]"


@pytest.fixture
def store_on_server(server: TursoServer) -> Iterator[DataLayer]:
    store = open_store(server.url)
    yield store
    store.close()
