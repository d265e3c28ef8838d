"""Settings: ``.jetpack/config.toml`` in the project, overridden by ``JETPACK_*`` environment variables.

The project is found like git finds a repository: ``JETPACK_PROJECT_DIR``, else
``CLAUDE_PROJECT_DIR`` (Claude Code passes it to stdio servers), else the nearest directory
at or above the working directory that holds ``.jetpack/``, else the working directory.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from jetpack.errors import ConfigError

STATE_DIR = ".jetpack"
CONFIG_FILE = "config.toml"
DB_FILE = "jetpack.db"

_PREFIX = re.compile(r"^[a-z][a-z0-9]{0,15}$")
_SERVER_URL = re.compile(r"^(libsql|https?)://", re.IGNORECASE)  # the libSQL adapter (jetpack/store/libsql.py)


@dataclass(frozen=True)
class TaskSettings:
    id_prefix: str = "jp"
    max_depth: int = 4
    lease_seconds: float = 600.0
    max_attempts: int = 3
    # A counted failed attempt waits retry_backoff_seconds x 2^(attempt-1), at most
    # retry_backoff_max_seconds, before the task is ready again (0: ready at once).
    retry_backoff_seconds: float = 30.0
    retry_backoff_max_seconds: float = 900.0

    def validate(self) -> None:
        if not _PREFIX.match(self.id_prefix):
            raise ConfigError(
                f"tasks.id_prefix {self.id_prefix!r} must be 1-16 lowercase letters or digits, "
                "starting with a letter (e.g. 'jp')"
            )
        if not 1 <= self.max_depth <= 8:
            raise ConfigError(f"tasks.max_depth must be between 1 and 8, not {self.max_depth}")
        if not 1 <= self.lease_seconds <= 86_400:
            raise ConfigError(f"tasks.lease_seconds must be between 1 and 86400, not {self.lease_seconds}")
        if not 1 <= self.max_attempts <= 100:
            raise ConfigError(f"tasks.max_attempts must be between 1 and 100, not {self.max_attempts}")
        if not 0 <= self.retry_backoff_seconds <= self.retry_backoff_max_seconds <= 7 * 86_400:
            raise ConfigError(
                "tasks.retry_backoff_seconds (0 = no wait) must be at most tasks.retry_backoff_max_seconds, "
                f"which must be at most 604800; not {self.retry_backoff_seconds} and {self.retry_backoff_max_seconds}"
            )


@dataclass(frozen=True)
class AgentSettings:
    # A session silent this long no longer holds its name; another session may take it.
    stale_seconds: float = 120.0
    # An agent silent this long is dead: its claims return to the queue, its reservations are released.
    dead_seconds: float = 900.0
    # ... and so is one whose session ended or whose process (on this host) is gone, once it has been
    # silent this long: time for a resumed session or its supervisor to pick up what it held.
    exit_grace_seconds: float = 30.0
    # A claimed task with no progress and no heartbeat from its holder this long is stalled: requeued.
    stalled_seconds: float = 600.0
    # A task's time budget: estimate x budget_factor (budget_default_seconds without an estimate),
    # clamped to [budget_min_seconds, budget_max_seconds]. Past it a task is reported, never killed.
    budget_factor: float = 2.0
    budget_min_seconds: float = 300.0
    budget_max_seconds: float = 7200.0
    budget_default_seconds: float = 1800.0

    def validate(self) -> None:
        if not 5 <= self.stale_seconds <= 86_400:
            raise ConfigError(f"agents.stale_seconds must be between 5 and 86400, not {self.stale_seconds}")
        for key in ("dead_seconds", "stalled_seconds"):
            if not 1 <= getattr(self, key) <= 7 * 86_400:
                raise ConfigError(f"agents.{key} must be between 1 and 604800, not {getattr(self, key)}")
        if not 0 <= self.exit_grace_seconds <= 3600:
            raise ConfigError(f"agents.exit_grace_seconds must be between 0 and 3600, not {self.exit_grace_seconds}")
        if not 0 < self.budget_factor <= 100:
            raise ConfigError(f"agents.budget_factor must be above 0 and at most 100, not {self.budget_factor}")
        if not 1 <= self.budget_min_seconds <= self.budget_max_seconds <= 7 * 86_400:
            raise ConfigError(
                "agents.budget_min_seconds must be at least 1 and at most agents.budget_max_seconds (at most "
                f"604800); not {self.budget_min_seconds} and {self.budget_max_seconds}"
            )
        if not 1 <= self.budget_default_seconds <= 7 * 86_400:
            raise ConfigError(
                f"agents.budget_default_seconds must be between 1 and 604800, not {self.budget_default_seconds}"
            )


@dataclass(frozen=True)
class ServerSettings:
    # How often each server process returns expired leases to the queue (also done before every claim).
    sweep_interval_seconds: float = 15.0
    # The HTTP transports (jetpack serve --http); see docs/http.md.
    host: str = "127.0.0.1"
    port: int = 8765
    allowed_hosts: list[str] = field(default_factory=list)  # names clients use (Host/Origin checks)
    require_token: bool = False  # tokens are required anyway beyond loopback
    max_body_bytes: int = 4 * 1024 * 1024
    rate_limit_per_second: float = 50.0  # per token (per address when anonymous); 0 turns it off
    rate_limit_burst: int = 200
    shutdown_timeout_seconds: float = 30.0  # how long a stop waits for calls in flight
    # jetpack serve --hub (docs/hub.md): stdio agents share one server process; it stops when idle this long.
    hub: bool = False
    hub_idle_seconds: float = 60.0

    def validate(self) -> None:
        if not 0.1 <= self.sweep_interval_seconds <= 3600:
            raise ConfigError(
                f"server.sweep_interval_seconds must be between 0.1 and 3600, not {self.sweep_interval_seconds}"
            )
        if not 0 <= self.port <= 65_535:
            raise ConfigError(f"server.port must be between 0 and 65535, not {self.port}")
        if not all(isinstance(h, str) and h.strip() for h in self.allowed_hosts):
            raise ConfigError('server.allowed_hosts must be a list of host names, e.g. ["jetpack.example.com"]')
        if not 1024 <= self.max_body_bytes <= 1024 * 1024 * 1024:
            raise ConfigError(f"server.max_body_bytes must be between 1024 and 1073741824, not {self.max_body_bytes}")
        if self.rate_limit_per_second < 0 or self.rate_limit_burst < 1:
            raise ConfigError("server.rate_limit_per_second must be 0 (off) or more; server.rate_limit_burst 1 or more")
        if not 0.1 <= self.hub_idle_seconds <= 86_400:
            raise ConfigError(f"server.hub_idle_seconds must be between 0.1 and 86400, not {self.hub_idle_seconds}")
        if not 0 <= self.shutdown_timeout_seconds <= 3600:
            raise ConfigError(
                f"server.shutdown_timeout_seconds must be between 0 and 3600, not {self.shutdown_timeout_seconds}"
            )


@dataclass(frozen=True)
class ReservationSettings:
    default_ttl_seconds: int = 3600
    max_ttl_seconds: int = 7 * 86_400

    def validate(self) -> None:
        if not 60 <= self.default_ttl_seconds <= self.max_ttl_seconds:
            raise ConfigError(
                f"reservations.default_ttl_seconds must be between 60 and max_ttl_seconds ({self.max_ttl_seconds}), "
                f"not {self.default_ttl_seconds}"
            )
        if not 60 <= self.max_ttl_seconds <= 365 * 86_400:
            raise ConfigError(
                f"reservations.max_ttl_seconds must be between 60 and 31536000, not {self.max_ttl_seconds}"
            )


@dataclass(frozen=True)
class MemorySettings:
    embedder: str = "onnx"  # onnx (int8 MiniLM, default), sentence-transformers, hash (tests)
    working_ttl_seconds: int = 86_400
    duplicate_threshold: float = 0.95  # cosine at which a new memory merges into an existing one
    claim_memories: int = 5  # memories handed out with a claimed task
    claim_budget_chars: int = 2_000  # ... within this many characters of content

    def validate(self) -> None:
        if self.embedder not in ("onnx", "sentence-transformers", "hash"):
            raise ConfigError(f"memory.embedder must be onnx, sentence-transformers or hash, not {self.embedder!r}")
        if not 1 <= self.working_ttl_seconds <= 365 * 86_400:
            raise ConfigError(
                f"memory.working_ttl_seconds must be between 1 and 31536000, not {self.working_ttl_seconds}"
            )
        if not 0.5 <= self.duplicate_threshold <= 1.0:
            raise ConfigError(f"memory.duplicate_threshold must be between 0.5 and 1.0, not {self.duplicate_threshold}")
        if not 0 <= self.claim_memories <= 50:
            raise ConfigError(f"memory.claim_memories must be between 0 and 50, not {self.claim_memories}")
        if not 100 <= self.claim_budget_chars <= 100_000:
            raise ConfigError(
                f"memory.claim_budget_chars must be between 100 and 100000, not {self.claim_budget_chars}"
            )


QUALITY_GATES = ("build", "lint", "types", "tests", "coverage")  # the order they run in


@dataclass(frozen=True)
class QualitySettings:
    # Shell commands run in the project by the quality gates (docs/quality.md); empty ones are skipped.
    build: str = ""
    lint: str = ""
    types: str = ""
    tests: str = ""
    coverage: str = ""  # a command printing a total coverage %; the other gates' output is read for one too
    timeout_seconds: float = 900.0  # per command; its whole process group is killed after this
    coverage_drop_points: float = 1.0  # how far coverage may fall below the baseline

    def commands(self) -> dict[str, str]:
        return {gate: getattr(self, gate).strip() for gate in QUALITY_GATES if getattr(self, gate).strip()}

    def validate(self) -> None:
        if not 1 <= self.timeout_seconds <= 86_400:
            raise ConfigError(f"quality.timeout_seconds must be between 1 and 86400, not {self.timeout_seconds}")
        if not 0 <= self.coverage_drop_points <= 100:
            raise ConfigError(
                f"quality.coverage_drop_points must be between 0 and 100, not {self.coverage_drop_points}"
            )


SWARM_STRATEGIES = ("first-fit", "best-fit", "round-robin", "load-balanced", "graph-prioritized")


@dataclass(frozen=True)
class SwarmSettings:
    # How claim_task picks a task when none is named (docs/swarm.md); a call may choose another.
    strategy: str = "best-fit"
    # How long a push strategy (round-robin, load-balanced) holds a ready task for the agent it chose.
    hold_seconds: float = 10.0

    def validate(self) -> None:
        if self.strategy not in SWARM_STRATEGIES:
            raise ConfigError(f"swarm.strategy must be one of {', '.join(SWARM_STRATEGIES)}, not {self.strategy!r}")
        if not 0.1 <= self.hold_seconds <= 600:
            raise ConfigError(f"swarm.hold_seconds must be between 0.1 and 600, not {self.hold_seconds}")


@dataclass(frozen=True)
class Settings:
    project_dir: Path
    db_path: Path
    tasks: TaskSettings = field(default_factory=TaskSettings)
    agents: AgentSettings = field(default_factory=AgentSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    reservations: ReservationSettings = field(default_factory=ReservationSettings)
    memory: MemorySettings = field(default_factory=MemorySettings)
    quality: QualitySettings = field(default_factory=QualitySettings)
    swarm: SwarmSettings = field(default_factory=SwarmSettings)
    # A libSQL/Turso server (JETPACK_DB_URL) instead of the file at db_path; out of repr, as it may
    # carry an ?authToken= (shown through ``database``, without credentials).
    db_url: str | None = field(default=None, repr=False)
    db_auth_token: str | None = field(default=None, repr=False)  # JETPACK_DB_AUTH_TOKEN; never shown

    @property
    def db_location(self) -> str | Path:
        """What ``open_store`` opens: the server URL, else the file."""
        return self.db_url or self.db_path

    @property
    def database(self) -> str:
        """Where the data lives, for people: the server URL without credentials, or the file."""
        if self.db_url is None:
            return str(self.db_path)
        parts = urlsplit(self.db_url)
        netloc = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    @property
    def state_dir(self) -> Path:
        return self.project_dir / STATE_DIR

    @property
    def config_path(self) -> Path:
        return self.state_dir / CONFIG_FILE


def find_project_dir(environ: Mapping[str, str], cwd: Path) -> Path:
    for variable in ("JETPACK_PROJECT_DIR", "CLAUDE_PROJECT_DIR"):
        if environ.get(variable):
            return Path(environ[variable]).expanduser().resolve()
    here = cwd.resolve()
    for candidate in (here, *here.parents):
        if (candidate / STATE_DIR).is_dir():
            return candidate
    return here


def _section(data: Mapping[str, Any], name: str, cls: type[Any], path: Path) -> Any:
    raw = data.get(name, {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{path}: unknown setting {name}.{key}; known: {', '.join(sorted(known))}")
        default = getattr(cls(), key)
        expected = float if isinstance(default, float) else type(default)
        coerced = float(value) if expected is float and type(value) is int else value
        if not isinstance(coerced, expected) or isinstance(coerced, bool) != isinstance(default, bool):
            raise ConfigError(f"{path}: {name}.{key} must be a {expected.__name__}, not {value!r}")
        values[key] = coerced
    section = cls(**values)
    section.validate()
    return section


def load_settings(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    project_dir = find_project_dir(environ, cwd or Path.cwd())
    config_path = project_dir / STATE_DIR / CONFIG_FILE
    data: dict[str, Any] = {}
    if config_path.is_file():
        try:
            data = tomllib.loads(config_path.read_text())
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{config_path} is not valid TOML: {error}") from error
    unknown = set(data) - {"tasks", "agents", "server", "store", "reservations", "memory", "quality", "swarm"}
    if unknown:
        raise ConfigError(
            f"{config_path}: unknown section(s) {sorted(unknown)}; "
            "known: tasks, agents, server, reservations, memory, quality, swarm, store"
        )
    db_setting = environ.get("JETPACK_DB") or data.get("store", {}).get("path")
    db_url = environ.get("JETPACK_DB_URL") or data.get("store", {}).get("url") or None
    if db_url and not _SERVER_URL.match(db_url):
        if "://" in db_url:
            raise ConfigError(
                f"JETPACK_DB_URL {db_url.split('://')[0]}:// is not supported; use libsql://, https:// or http:// "
                "(Hrana over HTTP), or a file path"
            )
        db_setting, db_url = db_url.removeprefix("file:"), None  # a file: the embedded database
    db_path = Path(db_setting).expanduser() if db_setting else Path(STATE_DIR) / DB_FILE
    if not db_path.is_absolute():
        db_path = project_dir / db_path
    settings = Settings(
        project_dir=project_dir,
        db_path=db_path,
        tasks=_section(data, "tasks", TaskSettings, config_path),
        agents=_section(data, "agents", AgentSettings, config_path),
        server=_section(data, "server", ServerSettings, config_path),
        reservations=_section(data, "reservations", ReservationSettings, config_path),
        memory=_section(data, "memory", MemorySettings, config_path),
        quality=_section(data, "quality", QualitySettings, config_path),
        swarm=_section(data, "swarm", SwarmSettings, config_path),
        db_url=db_url,
        db_auth_token=environ.get("JETPACK_DB_AUTH_TOKEN") or None,
    )
    if environ.get("JETPACK_EMBEDDER"):
        memory = replace(settings.memory, embedder=environ["JETPACK_EMBEDDER"])
        memory.validate()
        settings = replace(settings, memory=memory)
    if environ.get("JETPACK_LEASE_SECONDS"):
        try:
            lease = float(environ["JETPACK_LEASE_SECONDS"])
        except ValueError as error:
            raise ConfigError("JETPACK_LEASE_SECONDS must be a number of seconds") from error
        tasks = replace(settings.tasks, lease_seconds=lease)
        tasks.validate()
        settings = replace(settings, tasks=tasks)
    if environ.get("JETPACK_STRATEGY"):  # jetpack start --strategy passes it to its workers
        swarm = replace(settings.swarm, strategy=environ["JETPACK_STRATEGY"])
        swarm.validate()
        settings = replace(settings, swarm=swarm)
    return settings


DEFAULT_CONFIG = """\
# Jetpack project settings. Environment variables JETPACK_DB, JETPACK_AGENT, JETPACK_SKILLS
# and JETPACK_LEASE_SECONDS override them per process.

[tasks]
id_prefix = "jp"        # root ids look like jp-a3f8; children jp-a3f8.1, jp-a3f8.1.2
max_depth = 4           # levels in a task tree, root included (jp-a3f8.2.1.1)
lease_seconds = 600     # a claim lasts this long unless its holder makes another call
max_attempts = 3        # failed or expired attempts before a task is marked failed
retry_backoff_seconds = 30        # a retried task waits 30 s, 60 s, 120 s ... before it is ready again
retry_backoff_max_seconds = 900   # ... but never longer than this

[agents]
stale_seconds = 120     # a silent session loses its name after this long
dead_seconds = 900      # a silent agent is dead after this long: its work returns to the queue
exit_grace_seconds = 30 # ... or this long after its session ended or its process exited
stalled_seconds = 600   # a claimed task with no progress and no heartbeat this long is requeued
budget_factor = 2.0     # a task running past estimate x 2 (clamped to 5 min - 2 h) is reported, not killed

[server]
sweep_interval_seconds = 15   # how often expired leases return to the queue (and new mail joins search)
# hub = true                    # stdio agents share one server process (docs/hub.md); JETPACK_HUB=1 per agent
# hub_idle_seconds = 60         # ... which stops this long after its last agent
# jetpack serve --http (docs/http.md): where it listens, the names clients use, limits
# host = "127.0.0.1"            # beyond loopback (e.g. "0.0.0.0"), every request needs a token
# port = 8765
# allowed_hosts = ["jetpack.example.com"]
# max_body_bytes = 4194304
# rate_limit_per_second = 50    # per token; 0 turns the limit off
# rate_limit_burst = 200

[reservations]
default_ttl_seconds = 3600    # a file reservation lasts this long unless renewed
max_ttl_seconds = 604800

[memory]
embedder = "onnx"             # onnx (int8 MiniLM, offline), sentence-transformers (needs [torch]), hash
working_ttl_seconds = 86400   # working memory expires after this long (episodic never does)
duplicate_threshold = 0.95    # a new memory this similar to one in its layer is merged into it
claim_memories = 5            # memories that come with a claimed task ...
claim_budget_chars = 2000     # ... within this many characters

[quality]
# Commands the quality gates run in the project (jetpack quality baseline|check, and when a worker
# finishes a task); a regression against the baseline fails the task. See docs/quality.md.
# build = "python -m build"
# lint = "ruff check --output-format concise ."
# types = "mypy ."
# tests = "pytest -q"
# coverage = ""               # a command printing a total coverage %, if the tests do not
timeout_seconds = 900         # per command
coverage_drop_points = 1.0    # how far coverage may fall below the baseline

[swarm]
strategy = "best-fit"         # how claim_task picks: first-fit, best-fit, round-robin, load-balanced,
                              # graph-prioritized (docs/swarm.md); JETPACK_STRATEGY overrides it
hold_seconds = 10             # round-robin / load-balanced hold a ready task this long for the agent they chose

# [store]
# path = ".jetpack/jetpack.db"
# url = "libsql://my-db-me.turso.io"   # a libSQL/Turso server instead (JETPACK_DB_URL); the token only
#                                      # from JETPACK_DB_AUTH_TOKEN, never here. See docs/libsql.md.
"""
