"""Shared fixtures: real SQLite files in temporary project directories, real MCP clients."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from jetpack.actor import Actor
from jetpack.clock import ManualClock
from jetpack.config import Settings, TaskSettings, load_settings
from jetpack.server import IdentityDefaults, build_parts, create_server
from jetpack.store import DataLayer, open_store
from jetpack.tasks import QueueContext

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


@pytest.fixture
def store(settings: Settings) -> Iterator[DataLayer]:
    opened = open_store(settings.db_path)
    yield opened
    opened.close()


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
