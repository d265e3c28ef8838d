"""Where a project's hub listens, and which hub an agent may share.

Agents share a hub only when everything that shapes a server's behaviour is the same: the
Jetpack version and Python, the settings (database, config file, ``JETPACK_*`` overrides) and
the ``JETPACK_*`` environment. What differs per agent — its name, skills and client session —
travels with each connection instead. The key of all that names the socket, so a relay never
reaches a hub configured differently from the server it would otherwise have started.

The socket lives in a directory only its user can enter (``$XDG_RUNTIME_DIR`` or the temporary
directory, ``jetpack-<uid>``): a unix socket's path is limited to ~100 bytes, too short for the
project's own ``.jetpack/`` in deep checkouts.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from jetpack import __version__
from jetpack.config import Settings
from jetpack.errors import ConfigError
from jetpack.processes import process_alive

# Per agent: sent with each connection, never part of the key.
IDENTITY_VARS = ("JETPACK_AGENT", "JETPACK_SKILLS", "CLAUDE_CODE_SESSION_ID")
# How the relay reaches the hub: not part of how the hub behaves.
_RELAY_VARS = ("JETPACK_HUB",)


@dataclass(frozen=True)
class HubAddress:
    key: str
    socket: Path  # where the hub accepts relays
    lock: Path  # held by the running hub for its whole life; holds its HubRecord
    spawn: Path  # held by a relay while it starts a hub
    log: Path  # the hub's stderr


@dataclass(frozen=True)
class HubRecord:
    """What a running hub writes into its lock file."""

    pid: int
    key: str
    project: str
    database: str
    started_at: float

    def to_line(self) -> bytes:
        return json.dumps(self.__dict__).encode() + b"\n"

    @classmethod
    def read(cls, lock: Path) -> HubRecord | None:
        try:
            data = json.loads(lock.read_text() or "null")
            return cls(**data) if isinstance(data, dict) else None
        except (OSError, ValueError, TypeError):
            return None


def _running(lock: Path) -> HubRecord | None:
    """The record of the hub holding ``lock``, if it is running and listening."""
    record = HubRecord.read(lock)
    if record is None or not lock.with_suffix(".sock").exists() or not process_alive(record.pid):
        return None
    return record


def running_hub_pid(address: HubAddress) -> int | None:
    """The pid of the hub serving ``address``, if one is running."""
    record = _running(address.lock)
    return None if record is None else record.pid


def running_hubs() -> list[HubRecord]:
    """Every hub of this user that is running now."""
    return [record for lock in sorted(runtime_dir().glob("*.lock")) if (record := _running(lock)) is not None]


def hub_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a hub runs with: the agent's, less what is per agent."""
    return {k: v for k, v in environ.items() if k not in IDENTITY_VARS}


def hub_key(settings: Settings, environ: Mapping[str, str]) -> str:
    shaping = sorted(
        (k, v) for k, v in environ.items() if k.startswith("JETPACK_") and k not in IDENTITY_VARS + _RELAY_VARS
    )
    material = json.dumps([__version__, sys.executable, repr(settings), shaping])
    return hashlib.sha256(material.encode()).hexdigest()[:24]


def runtime_dir() -> Path:
    """A directory for sockets that only this user can enter (created on first use)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    path = Path(base) / f"jetpack-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
    except OSError as error:
        raise ConfigError(f"cannot create the hub's directory {path}: {error}") from error
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ConfigError(
            f"{path} is not a private directory of this user (owner uid {info.st_uid}, mode "
            f"{stat.filemode(info.st_mode)}); remove it, or set XDG_RUNTIME_DIR to one, and start again"
        )
    return path


def hub_address(settings: Settings, environ: Mapping[str, str]) -> HubAddress:
    return address_of(hub_key(settings, environ))


def address_of(key: str) -> HubAddress:
    """The files of the hub with this key."""
    folder = runtime_dir()
    return HubAddress(
        key=key,
        socket=folder / f"{key}.sock",
        lock=folder / f"{key}.lock",
        spawn=folder / f"{key}.spawn",
        log=folder / f"{key}.log",
    )
