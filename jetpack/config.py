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

from jetpack.errors import ConfigError

STATE_DIR = ".jetpack"
CONFIG_FILE = "config.toml"
DB_FILE = "jetpack.db"

_PREFIX = re.compile(r"^[a-z][a-z0-9]{0,15}$")


@dataclass(frozen=True)
class TaskSettings:
    id_prefix: str = "jp"
    max_depth: int = 4
    lease_seconds: float = 600.0
    max_attempts: int = 3

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


@dataclass(frozen=True)
class AgentSettings:
    # A session silent this long no longer holds its name; another session may take it.
    stale_seconds: float = 120.0

    def validate(self) -> None:
        if not 5 <= self.stale_seconds <= 86_400:
            raise ConfigError(f"agents.stale_seconds must be between 5 and 86400, not {self.stale_seconds}")


@dataclass(frozen=True)
class ServerSettings:
    # How often each server process returns expired leases to the queue (also done before every claim).
    sweep_interval_seconds: float = 15.0

    def validate(self) -> None:
        if not 0.1 <= self.sweep_interval_seconds <= 3600:
            raise ConfigError(
                f"server.sweep_interval_seconds must be between 0.1 and 3600, not {self.sweep_interval_seconds}"
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


@dataclass(frozen=True)
class Settings:
    project_dir: Path
    db_path: Path
    tasks: TaskSettings = field(default_factory=TaskSettings)
    agents: AgentSettings = field(default_factory=AgentSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    reservations: ReservationSettings = field(default_factory=ReservationSettings)
    memory: MemorySettings = field(default_factory=MemorySettings)

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
    unknown = set(data) - {"tasks", "agents", "server", "store", "reservations", "memory"}
    if unknown:
        raise ConfigError(
            f"{config_path}: unknown section(s) {sorted(unknown)}; "
            "known: tasks, agents, server, reservations, memory, store"
        )
    db_setting = environ.get("JETPACK_DB") or data.get("store", {}).get("path")
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
    return settings


DEFAULT_CONFIG = """\
# Jetpack project settings. Environment variables JETPACK_DB, JETPACK_AGENT, JETPACK_SKILLS
# and JETPACK_LEASE_SECONDS override them per process.

[tasks]
id_prefix = "jp"        # root ids look like jp-a3f8; children jp-a3f8.1, jp-a3f8.1.2
max_depth = 4           # levels in a task tree, root included (jp-a3f8.2.1.1)
lease_seconds = 600     # a claim lasts this long unless its holder makes another call
max_attempts = 3        # failed or expired attempts before a task is marked failed

[agents]
stale_seconds = 120     # a silent session loses its name after this long

[server]
sweep_interval_seconds = 15   # how often expired leases return to the queue

[reservations]
default_ttl_seconds = 3600    # a file reservation lasts this long unless renewed
max_ttl_seconds = 604800

[memory]
embedder = "onnx"             # onnx (int8 MiniLM, offline), sentence-transformers (needs [torch]), hash
working_ttl_seconds = 86400   # working memory expires after this long (episodic never does)
duplicate_threshold = 0.95    # a new memory this similar to one in its layer is merged into it
claim_memories = 5            # memories that come with a claimed task ...
claim_budget_chars = 2000     # ... within this many characters

# [store]
# path = ".jetpack/jetpack.db"
"""
