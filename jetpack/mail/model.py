"""Agent Mail shapes: a message to send, a message as read, an inbox page, a thread."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from jetpack.clock import Clock, SystemClock
from jetpack.config import Settings
from jetpack.store import DataLayer

SUBJECT_MAX = 300
BODY_MAX = 100_000
RECIPIENTS_MAX = 100
THREAD_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
TOPIC = r"^[a-z0-9][a-z0-9._-]{0,63}$"
KIND = r"^[a-z][a-z0-9_-]{0,31}$"
BROADCAST = "*"


class Importance(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


URGENT_LEVELS = (Importance.HIGH, Importance.URGENT)


class SenderKind(StrEnum):
    AGENT = "agent"
    HUMAN = "human"
    SYSTEM = "system"


@dataclass(frozen=True)
class Sender:
    name: str
    kind: SenderKind = SenderKind.AGENT


SYSTEM_SENDER = Sender("system", SenderKind.SYSTEM)


@dataclass(frozen=True)
class MailContext:
    store: DataLayer
    clock: Clock = field(default_factory=SystemClock)
    # An agent silent this long is not "live": broadcasts skip it (so the dead do not pile up).
    live_seconds: float = 120.0
    # Agent names this process has seen exist. Names are never deleted, so a name once found needs no
    # second look (a hub sends thousands of messages a second to the same few dozen names).
    known_agents: set[str] = field(default_factory=set, repr=False, compare=False)

    def now(self) -> int:
        return self.clock.now_ms()

    @classmethod
    def for_settings(cls, settings: Settings, store: DataLayer, clock: Clock | None = None) -> MailContext:
        return cls(store=store, clock=clock or SystemClock(), live_seconds=settings.agents.stale_seconds)


class NewMessage(BaseModel):
    """A message to send. Replies (``reply_to``) inherit thread, importance and ack flag."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    to: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=64)]],
        Field(max_length=RECIPIENTS_MAX, description="Agent names, or '*' for every live agent."),
    ] = []
    topic: Annotated[
        str | None, Field(pattern=TOPIC, description="Also deliver to agents subscribed to this topic.")
    ] = None
    subject: Annotated[str | None, Field(min_length=1, max_length=SUBJECT_MAX)] = None
    body: Annotated[str, Field(max_length=BODY_MAX, description="Markdown.")] = ""
    thread_id: Annotated[str | None, Field(pattern=THREAD_ID, description="Omit to start a new thread.")] = None
    reply_to: Annotated[int | None, Field(ge=1, description="Id of the message this answers.")] = None
    importance: Importance | None = None
    ack_required: bool | None = None
    kind: Annotated[str, Field(pattern=KIND, description="note, question, handoff, intent, status, …")] = "note"
    task_id: Annotated[str | None, Field(max_length=200, description="The task this is about; its thread.")] = None


class SentMessage(BaseModel):
    id: int
    thread_id: str
    recipients: list[str]


class MessageView(BaseModel):
    id: int
    thread_id: str
    sender: str
    sender_kind: SenderKind = SenderKind.AGENT
    subject: str
    body: str | None = None
    snippet: str | None = None
    importance: Importance = Importance.NORMAL
    ack_required: bool = False
    kind: str = "note"
    task_id: str | None = None
    topic: str | None = None
    reply_to: int | None = None
    to: list[str] = []
    created_at: datetime
    read: bool | None = None
    acknowledged: bool | None = None


class InboxPage(BaseModel):
    messages: list[MessageView]
    more: bool = False
    unread: int = 0
    urgent_unread: int = 0
    ack_pending: int = 0


class ThreadView(BaseModel):
    thread_id: str
    participants: list[str]
    messages: list[MessageView]
    more: bool = False


class MarkResult(BaseModel):
    marked_read: int = 0
    acknowledged: int = 0
    not_yours: list[int] = []


class SearchHit(BaseModel):
    id: int
    thread_id: str
    sender: str
    subject: str
    snippet: str
    created_at: datetime
