"""Time as integer milliseconds since the Unix epoch, injectable so tests can move it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that only moves when told to (simulations and property tests)."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms

    def now_ms(self) -> int:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += int(seconds * 1000)


def to_datetime(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def format_ms(ms: int | None) -> str:
    """Short UTC time for messages, e.g. ``14:05:09Z``; empty when unknown."""
    stamp = to_datetime(ms)
    return "" if stamp is None else stamp.strftime("%H:%M:%SZ")
