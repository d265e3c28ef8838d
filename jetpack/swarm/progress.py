"""What a running swarm reports: why it stopped, its events, live snapshots and the final summary.

Plain data for the entrypoints to render (``jetpack start`` prints them live, ``--json`` prints the
summary); nothing here runs anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel

from jetpack.errors import InvalidInput


class StopReason(StrEnum):
    DRAINED = "drained"
    IDLE = "idle"
    TIME = "time"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class SwarmEvent:
    agent: str
    kind: str  # claimed, completed, failed, died, timed_out, handed_back, stopped, stop
    task_id: str | None
    text: str


class WorkerView(BaseModel):
    name: str
    state: str  # working, idle
    task_id: str | None = None
    task_title: str | None = None
    seconds: float | None = None
    completed: int = 0
    failed: int = 0
    respawns: int = 0
    branch: str | None = None


class SwarmSnapshot(BaseModel):
    elapsed_seconds: float
    tasks: dict[str, int]
    completed: int  # by this swarm
    per_minute: float
    workers: list[WorkerView]


class StuckTask(BaseModel):
    id: str
    title: str
    state: str
    why: str | None = None


class SwarmSummary(BaseModel):
    reason: StopReason
    harness: str
    strategy: str | None
    elapsed_seconds: float
    tasks: dict[str, int]
    completed: int
    failed_attempts: int
    respawns: int
    per_minute: float
    workers: list[WorkerView]
    unfinished: list[StuckTask] = []
    logs: str


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``2h``, ``1d`` → seconds."""
    value = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
    scale = units.get(value[-1:])
    number = value[:-1] if scale else value
    try:
        seconds = float(number) * (scale or 1)
    except ValueError:
        raise InvalidInput(f"{text!r} is not a duration; write e.g. 90, 90s, 30m, 2h or 1d") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidInput(f"{text!r} is not a positive duration")
    return seconds
