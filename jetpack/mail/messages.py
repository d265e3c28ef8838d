"""Sending mail: threads, replies, recipients (agents, '*' for the live ones, topic subscribers)."""

from __future__ import annotations

import difflib
import json
import re
import secrets

from jetpack.errors import InvalidInput, NotFound
from jetpack.mail.model import (
    BROADCAST,
    SUBJECT_MAX,
    SYSTEM_SENDER,
    TOPIC,
    URGENT_LEVELS,
    Importance,
    MailContext,
    NewMessage,
    Sender,
    SenderKind,
    SentMessage,
)
from jetpack.store import Row, Statement
from jetpack.tasks.ids import check_task_id

_RE = "Re: "


def send_mail(ctx: MailContext, sender: Sender, message: NewMessage) -> SentMessage:
    """Store a message and deliver it to every recipient's inbox in one transaction."""
    original = _original(ctx, message.reply_to) if message.reply_to is not None else None
    to = message.to or ([original["sender"]] if original and original["sender_kind"] != "system" else [])
    if not to and message.topic is None:
        raise InvalidInput("no recipients: give agent names in `to`, '*' for every live agent, or a topic")
    subject = message.subject or (_reply_subject(original["subject"]) if original else None)
    if subject is None:
        raise InvalidInput("subject is empty; say in a few words what the message is about")
    importance = message.importance or (Importance(original["importance"]) if original else Importance.NORMAL)
    ack_required = (
        message.ack_required if message.ack_required is not None else bool(original and original["ack_required"])
    )
    if message.task_id is not None:
        check_task_id(message.task_id)
        if not ctx.store.query("SELECT 1 FROM tasks WHERE id = :id", {"id": message.task_id}):
            raise NotFound(f"no task {message.task_id}; call list_tasks to see existing ids")
    thread_id = (
        original["thread_id"] if original else message.thread_id or message.task_id or f"th-{secrets.token_hex(4)}"
    )
    recipients = _resolve_recipients(ctx, sender, to, message.topic)
    now = ctx.now()
    params = {
        "thread": thread_id,
        "sender": sender.name,
        "sender_kind": sender.kind.value,
        "subject": subject,
        "body": message.body,
        "importance": importance.value,
        "ack": int(ack_required),
        "kind": message.kind,
        "task": message.task_id or (original["task_id"] if original else None),
        "topic": message.topic,
        "reply_to": message.reply_to,
        "to": json.dumps(to),
        "now": now,
        "recipients": json.dumps(recipients),
        "urgent": int(importance in URGENT_LEVELS),
    }
    rows = ctx.store.write(message_statements(params))
    return SentMessage(id=rows[0][0]["id"], thread_id=thread_id, recipients=recipients)


def message_statements(params: dict[str, object], only_if: str = "1") -> list[Statement]:
    """Store one message and deliver it to each of ``params["recipients"]`` (a JSON list): two
    statements for a write batch, the first ``RETURNING`` the message id. With ``only_if`` (an SQL
    condition over the batch's tables, its parameters in ``params``), neither writes unless it holds."""
    return [
        Statement(
            f"""INSERT INTO messages(thread_id, sender, sender_kind, subject, body, importance, ack_required,
                kind, task_id, topic, reply_to, addressed_to, created_at)
            SELECT :thread, :sender, :sender_kind, :subject, :body, :importance, :ack, :kind, :task, :topic,
                :reply_to, :to, :now
            WHERE {only_if}
            RETURNING id""",
            params,
        ),
        # Writes are serialised, so the newest message is the one just inserted.
        Statement(
            f"""INSERT INTO deliveries(message_id, recipient, urgent, ack_required)
            SELECT (SELECT max(id) FROM messages), r.value, :urgent, :ack FROM json_each(:recipients) AS r
            WHERE {only_if}""",
            params,
        ),
    ]


def system_message_params(
    *, thread_id: str, task_id: str | None, subject: str, body: str, kind: str, recipients: list[str], now: int
) -> dict[str, object]:
    """The parameters of :func:`message_statements` for a message from Jetpack itself."""
    return {
        "thread": thread_id,
        "sender": SYSTEM_SENDER.name,
        "sender_kind": SYSTEM_SENDER.kind.value,
        "subject": subject[:SUBJECT_MAX],
        "body": body,
        "importance": Importance.NORMAL.value,
        "ack": 0,
        "kind": kind,
        "task": task_id,
        "topic": None,
        "reply_to": None,
        "to": json.dumps(recipients),
        "now": now,
        "recipients": json.dumps(recipients),
        "urgent": 0,
    }


def _original(ctx: MailContext, message_id: int) -> Row:
    rows = ctx.store.query("SELECT * FROM messages WHERE id = :id", {"id": message_id})
    if not rows:
        raise NotFound(f"no message {message_id} to reply to; fetch_inbox or get_thread shows message ids")
    return rows[0]


def _reply_subject(subject: str) -> str:
    return subject if subject.startswith(_RE) else _RE + subject


def _resolve_recipients(ctx: MailContext, sender: Sender, to: list[str], topic: str | None) -> list[str]:
    names = [n.strip() for n in to]
    wanted: dict[str, None] = {}
    if BROADCAST in names:
        for row in ctx.store.query(
            "SELECT name FROM agents WHERE ended_at IS NULL AND last_seen_at >= :since ORDER BY name",
            {"since": ctx.now() - int(ctx.live_seconds * 1000)},
        ):
            wanted.setdefault(row["name"], None)
    explicit = [n for n in names if n != BROADCAST]
    unseen = [n for n in explicit if n not in ctx.known_agents]
    if unseen:
        found = {
            r["name"]
            for r in ctx.store.query(
                "SELECT name FROM agents WHERE name IN (SELECT value FROM json_each(:names))",
                {"names": json.dumps(unseen)},
            )
        }
        unknown = [n for n in unseen if n not in found]
        if unknown:
            known = {r["name"] for r in ctx.store.query("SELECT name FROM agents")}
            raise NotFound(_unknown_agents_message(unknown, known))
        ctx.known_agents.update(found)
    for name in explicit:
        wanted.setdefault(name, None)
    if topic is not None:
        for row in ctx.store.query(
            "SELECT agent FROM topic_subscriptions WHERE topic = :topic ORDER BY agent", {"topic": topic}
        ):
            wanted.setdefault(row["agent"], None)
    if sender.kind is SenderKind.AGENT and (BROADCAST in names or topic is not None):
        wanted.pop(sender.name, None)  # a broadcast does not come back to its sender
    return list(wanted)


def _unknown_agents_message(unknown: list[str], known: set[str]) -> str:
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.5)
        parts.append(f"{name!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    return (
        f"no agent named {', '.join(parts)}; list_agents or `jetpack agents` shows who exists, "
        "and '*' reaches every live agent"
    )


def subscribe_topics(ctx: MailContext, agent: str, topics: list[str], *, unsubscribe: bool = False) -> list[str]:
    """Add (or remove) topic subscriptions; return the agent's topics afterwards."""
    for topic in topics:
        if not re.match(TOPIC, topic):
            raise InvalidInput(f"topic {topic!r} must be lowercase letters, digits, '.', '_' or '-' (e.g. 'frontend')")
    if topics:
        if unsubscribe:
            sql = "DELETE FROM topic_subscriptions WHERE agent = :agent AND topic IN (SELECT value FROM json_each(:t))"
        else:
            sql = (
                "INSERT INTO topic_subscriptions(topic, agent, created_at) SELECT DISTINCT value, :agent, :now "
                "FROM json_each(:t) WHERE NOT EXISTS (SELECT 1 FROM topic_subscriptions s "
                "WHERE s.topic = json_each.value AND s.agent = :agent)"
            )
        ctx.store.execute(sql, {"agent": agent, "t": json.dumps(topics), "now": ctx.now()})
    rows = ctx.store.query(
        "SELECT topic FROM topic_subscriptions WHERE agent = :agent ORDER BY topic", {"agent": agent}
    )
    return [r["topic"] for r in rows]
