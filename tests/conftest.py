"""Shared fixtures: real SQLite files in temporary project directories, real tursodb servers,
real MCP clients."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from libsql_server import TursoServer, start_tursodb, tursodb_binary

from jetpack.actor import Actor
from jetpack.clock import ManualClock
from jetpack.config import Settings, TaskSettings, load_settings
from jetpack.server import IdentityDefaults, build_parts, create_server
from jetpack.store import DataLayer, open_store
from jetpack.tasks import NewTask, QueueContext

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project directory (no .jetpack/ yet)."""
    root = tmp_path / "project"
    root.mkdir()
    return root


@pytest.fixture
def settings(project: Path) -> Settings:
    return load_settings({"JETPACK_PROJECT_DIR": str(project)})


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``both_adapters`` run once on the embedded SQLite file and once on a real
    ``tursodb`` server (the libSQL adapter), through the same ``store`` fixture."""
    if metafunc.definition.get_closest_marker("both_adapters") and "datalayer_kind" in metafunc.fixturenames:
        metafunc.parametrize("datalayer_kind", ["sqlite", "libsql"], indirect=True)


@pytest.fixture
def datalayer_kind(request: pytest.FixtureRequest) -> str:
    """Which adapter ``store`` uses: "sqlite" unless the test is marked ``both_adapters``."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture(scope="session")
def libsql_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database migrated once by a tursodb server, copied for each test (migrating over HTTP
    takes ~0.3 s; a copy and a server start take a few milliseconds)."""
    if tursodb_binary() is None:
        pytest.skip("tursodb is not installed; ./scripts/test installs it (npm install --prefix .tools turso@0.6.0)")
    template = tmp_path_factory.mktemp("libsql-template") / "jetpack.db"
    server = start_tursodb(template)
    try:
        open_store(server.url).close()
    finally:
        server.stop()
    return template


@pytest.fixture
def libsql_server(libsql_template: Path, tmp_path: Path) -> Iterator[TursoServer]:
    """A tursodb server of this test's own, serving a fresh copy of the migrated database."""
    database = tmp_path / "libsql" / "jetpack.db"
    database.parent.mkdir()
    for suffix in ("", "-wal"):
        if Path(f"{libsql_template}{suffix}").exists():
            shutil.copyfile(f"{libsql_template}{suffix}", f"{database}{suffix}")
    server = start_tursodb(database)
    yield server
    server.stop()


@pytest.fixture
def another_store(
    settings: Settings, datalayer_kind: str, request: pytest.FixtureRequest
) -> Iterator[Callable[[], DataLayer]]:
    """Opens another DataLayer on the test's database, with connections of its own, as another
    process would (closed after the test)."""
    location = request.getfixturevalue("libsql_server").url if datalayer_kind == "libsql" else settings.db_path
    opened: list[DataLayer] = []

    def open_another() -> DataLayer:
        opened.append(open_store(location))
        return opened[-1]

    yield open_another
    for another in opened:
        another.close()


@pytest.fixture
def store(another_store: Callable[[], DataLayer]) -> DataLayer:
    """The test's database: a SQLite file, or a tursodb server for tests marked ``both_adapters``."""
    return another_store()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def queue(store: DataLayer, clock: ManualClock) -> QueueContext:
    return QueueContext(store=store, settings=TaskSettings(), clock=clock)


@pytest.fixture
def alice() -> Actor:
    return Actor("alice", frozenset({"python"}))


@pytest.fixture
def bob() -> Actor:
    return Actor("bob", frozenset({"python", "sql"}))


@pytest.fixture(params=["legacy", "auto"])
def protocol_mode(request: pytest.FixtureRequest) -> str:
    """Both MCP protocol eras: the initialize handshake (today's agents) and 2026-07-28."""
    return str(request.param)


@pytest.fixture
async def mcp_client(settings: Settings, store: DataLayer, protocol_mode: str) -> AsyncIterator[object]:
    """A real MCP client connected in-process to a Jetpack server acting as agent 'tester'."""
    from mcp import Client

    parts = build_parts(settings, store=store, identity=IdentityDefaults(name="tester", skills=("python",)))
    async with Client(create_server(parts), mode=protocol_mode) as client:
        yield client


def jetpack_command(*args: str) -> list[str]:
    """Command line that runs this checkout's jetpack CLI in a subprocess."""
    return [sys.executable, "-m", "jetpack", *args]


def subprocess_env(project: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JETPACK_", "CLAUDE"))}
    env["JETPACK_PROJECT_DIR"] = str(project)
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


@pytest.fixture
def fresh_graph_cache() -> Iterator[None]:
    """No TaskGraph analysis cached from another test's database (use with pytest.mark.usefixtures)."""
    from jetpack.swarm.graph import forget_cached_graphs

    forget_cached_graphs()
    yield
    forget_cached_graphs()


def make(queue: QueueContext, specs: list[NewTask]) -> dict[str, str]:
    """Create the tasks as 'planner'; their ids by ref (or title)."""
    from jetpack.tasks import create_tasks

    return {c.ref or c.title: c.id for c in create_tasks(queue, Actor("planner"), specs)}


def diamond_plan() -> list[NewTask]:
    """a(10) → b(30), c(5) → d(10); e(40) blocks the epic, whose leaf e2 also waits on a (critical: a b d)."""
    return [
        NewTask(title="a", ref="a", estimate_minutes=10),
        NewTask(title="b", ref="b", depends_on=["a"], estimate_minutes=30),
        NewTask(title="c", ref="c", depends_on=["a"], estimate_minutes=5),
        NewTask(title="d", ref="d", depends_on=["b", "c"], estimate_minutes=10),
        NewTask(title="e", ref="e", estimate_minutes=40),
        NewTask(
            title="epic",
            ref="epic",
            depends_on=["e"],
            children=[
                NewTask(title="e1", ref="e1", estimate_minutes=5),
                NewTask(title="e2", ref="e2", estimate_minutes=5, depends_on=["a"]),
            ],
        ),
    ]
