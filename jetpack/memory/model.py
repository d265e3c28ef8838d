"""Memory shapes: a memory to write, a memory as stored, a recall hit."""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jetpack.tasks.model import Name, normalise_names

CONTENT_MAX = 20_000
SNIPPET = 240


class Layer(StrEnum):
    EPISODIC = "episodic"  # what happened: permanent
    WORKING = "working"  # scratch context: expires (memory.working_ttl_seconds by default)
    PROCEDURAL = "procedural"  # how to do things: learned from episodes or written by agents


class NewMemory(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    content: Annotated[str, Field(min_length=1, max_length=CONTENT_MAX, description="What to remember.")]
    layer: Layer = Layer.EPISODIC
    tags: Annotated[list[Name], Field(max_length=20)] = []
    task_id: Annotated[str | None, Field(max_length=200)] = None
    importance: Annotated[float, Field(ge=0.0, le=1.0, description="0 trivial … 1 critical.")] = 0.5
    ttl_seconds: Annotated[
        int | None, Field(ge=1, le=365 * 86_400, description="Working memory only; default from config.")
    ] = None
    source: Annotated[str, Field(max_length=64)] = "agent"

    @field_validator("tags")
    @classmethod
    def _lowercase(cls, values: list[str]) -> list[str]:
        return normalise_names(values)

    @field_validator("importance")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("importance must be a number between 0 and 1")
        return value


class MemoryView(BaseModel):
    id: int
    layer: Layer
    content: str
    tags: list[str] = []
    task_id: str | None = None
    agent: str | None = None
    source: str = "agent"
    importance: float
    confidence: float | None = None
    access_count: int = 0
    created_at: datetime
    last_accessed_at: datetime | None = None
    expires_at: datetime | None = None
    evidence: list[int] = []


class MemoryHit(BaseModel):
    """One recalled memory: a snippet, its id (get it whole with the CLI or resource), and why it ranked."""

    id: int
    layer: Layer
    snippet: str
    score: float
    similarity: float
    keyword_match: bool = False
    tags: list[str] = []
    task_id: str | None = None
    confidence: float | None = None
    created_at: datetime


class RememberResult(BaseModel):
    id: int
    merged: bool = False  # an existing near-duplicate absorbed it (importance raised, access counted)
    layer: Layer
    expires_at: datetime | None = None


class RecallResult(BaseModel):
    memories: list[MemoryHit]


def snippet(content: str, limit: int = SNIPPET) -> str:
    return content if len(content) <= limit else content[: limit - 1] + "…"
