"""Reading mail: the inbox with its durable cursor, read and ack marks, threads, the attention notice."""

from __future__ import annotations

import json
import re
from typing import Any

from jetpack.clock import to_datetime
from jetpack.errors import Conflict, InvalidInput, NotFound
from jetpack.mail.model import (
    THREAD_ID,
    Importance,
    InboxPage,
    MailContext,
    MarkResult,
    MessageView,
    SenderKind,
    ThreadView,
)
from jetpack.store import GuardFailed, Row, Statement, expect

MAX_PAGE = 200
SNIPPET = 160
_ATTEMPTS = 5

_CURSOR = "coalesce((SELECT delivery_id FROM mail_cursors WHERE recipient = :agent), 0)"
_MESSAGE_COLUMNS = """m.id, m.thread_id, m.sender, m.sender_kind, m.subject, m.body, m.importance, m.ack_required,
    m.kind, m.task_id, m.topic, m.reply_to, m.addressed_to, m.created_at"""


def message_from_row(row: Row, *, include_body: bool) -> MessageView:
    body = row["body"]
    view: dict[str, Any] = {
        "id": row["id"],
        "thread_id": row["thread_id"],
        "sender": row["sender"],
        "sender_kind": SenderKind(row["sender_kind"]),
        "subject": row["subject"],
        "importance": Importance(row["importance"]),
        "ack_required": bool(row["ack_required"]),
        "kind": row["kind"],
        "task_id": row["task_id"],
        "topic": row["topic"],
        "reply_to": row["reply_to"],
        "to": json.loads(row["addressed_to"]),
        "created_at": to_datetime(row["created_at"]),
    }
    if include_body:
        view["body"] = body
    elif body:
        view["snippet"] = body if len(body) <= SNIPPET else body[: SNIPPET - 1] + "…"
    if "read_at" in row:
        view["read"] = row["read_at"] is not None
        view["acknowledged"] = row["acked_at"] is not None if row["ack_required"] else None
    # Every value above has its field's type already (stored by send_mail, converted here): a page of
    # 50 is built on every fetch, and validating it again cost more than reading it.
    return MessageView.model_construct(**view)


def fetch_inbox(
    ctx: MailContext,
    agent: str,
    *,
    limit: int = 20,
    include_bodies: bool = False,
    unread_only: bool = False,
    urgent_only: bool = False,
) -> InboxPage:
    """Without filters: what arrived since your last fetch, oldest first; the cursor moves past it, so
    each message comes back exactly once (and a restart loses nothing). With ``unread_only`` or
    ``urgent_only``: a view over everything you have not read, newest first; the cursor stays put."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}, not {limit}")
    if unread_only or urgent_only:
        rows = ctx.store.query(
            f"""SELECT {_MESSAGE_COLUMNS}, d.read_at, d.acked_at
            FROM deliveries d JOIN messages m ON m.id = d.message_id
            WHERE d.recipient = :agent AND (:unread = 0 OR d.read_at IS NULL) AND (:urgent = 0 OR d.urgent = 1)
            ORDER BY d.id DESC LIMIT :limit""",
            {"agent": agent, "unread": int(unread_only), "urgent": int(urgent_only), "limit": limit + 1},
        )
        return _page(ctx, agent, rows, limit, include_bodies)
    for _ in range(_ATTEMPTS):
        rows = ctx.store.query(
            f"""SELECT d.id AS delivery_id, {_CURSOR} AS cursor_at, {_MESSAGE_COLUMNS}, d.read_at, d.acked_at
            FROM deliveries d JOIN messages m ON m.id = d.message_id
            WHERE d.recipient = :agent AND d.id > {_CURSOR}
            ORDER BY d.id LIMIT :limit""",
            {"agent": agent, "limit": limit + 1},
        )
        if not rows:
            return _page(ctx, agent, rows, limit, include_bodies)
        try:
            ctx.store.write(
                [
                    expect(f"{_CURSOR} = :old", {"agent": agent, "old": rows[0]["cursor_at"]}),
                    Statement(
                        "INSERT INTO mail_cursors(recipient, delivery_id) VALUES (:agent, :new) "
                        "ON CONFLICT(recipient) DO UPDATE SET delivery_id = excluded.delivery_id",
                        {"agent": agent, "new": rows[:limit][-1]["delivery_id"]},
                    ),
                ]
            )
        except GuardFailed:
            continue  # another session of this agent fetched at the same moment: read again
        return _page(ctx, agent, rows, limit, include_bodies)
    raise Conflict("the inbox kept moving while fetching; call fetch_inbox again")


def _page(ctx: MailContext, agent: str, rows: list[Row], limit: int, include_bodies: bool) -> InboxPage:
    unread, urgent, ack = attention(ctx, agent, with_unread=True)
    return InboxPage(
        messages=[message_from_row(r, include_body=include_bodies) for r in rows[:limit]],
        more=len(rows) > limit,
        unread=unread,
        urgent_unread=urgent,
        ack_pending=ack,
    )


def attention(ctx: MailContext, agent: str, *, with_unread: bool = False) -> tuple[int, int, int]:
    """(unread, unread urgent, awaiting your ack) in one read — cheap: partial indexes hold only such rows."""
    unread = "(SELECT count(*) FROM deliveries WHERE recipient = :agent AND read_at IS NULL)" if with_unread else "0"
    row = ctx.store.query(
        f"""SELECT coalesce(sum(urgent = 1 AND read_at IS NULL), 0) AS urgent,
                  coalesce(sum(ack_required = 1 AND acked_at IS NULL), 0) AS ack, {unread} AS unread
        FROM deliveries WHERE recipient = :agent
          AND ((urgent = 1 AND read_at IS NULL) OR (ack_required = 1 AND acked_at IS NULL))""",
        {"agent": agent},
    )[0]
    return int(row["unread"]), int(row["urgent"]), int(row["ack"])


def attention_notice(ctx: MailContext, agent: str) -> str | None:
    """The one line every tool result carries while urgent or ack-required mail waits."""
    _, urgent, ack = attention(ctx, agent)
    return notice_text(urgent, ack)


def notice_text(urgent: int, ack: int) -> str | None:
    """The notice for these counts (None when nothing waits)."""
    if not urgent and not ack:
        return None
    parts = []
    if urgent:
        parts.append(f"{urgent} urgent unread")
    if ack:
        parts.append(f"{ack} awaiting your acknowledgement")
    return f"[mail] {' and '.join(parts)}: call fetch_inbox(unread_only=true), then mark_mail"


def mark_mail(ctx: MailContext, agent: str, message_ids: list[int], *, read: bool, acknowledge: bool) -> MarkResult:
    """Mark messages read and/or acknowledged (acknowledging also marks read). Idempotent."""
    if not message_ids:
        raise InvalidInput("message_ids is empty; fetch_inbox lists the ids of your messages")
    if not read and not acknowledge:
        raise InvalidInput("nothing to do: pass read=true and/or acknowledge=true")
    ids = json.dumps(sorted(set(message_ids)))
    params = {"agent": agent, "ids": ids, "now": ctx.now()}
    mine = {
        r["message_id"]
        for r in ctx.store.query(
            "SELECT message_id FROM deliveries WHERE recipient = :agent AND message_id IN "
            "(SELECT value FROM json_each(:ids))",
            params,
        )
    }
    results = ctx.store.write(
        [
            Statement(
                "UPDATE deliveries SET read_at = :now WHERE recipient = :agent AND read_at IS NULL "
                "AND message_id IN (SELECT value FROM json_each(:ids)) RETURNING message_id",
                params,
            ),
            Statement(
                "UPDATE deliveries SET acked_at = :now WHERE recipient = :agent AND acked_at IS NULL "
                "AND ack_required = 1 AND :ack = 1 AND message_id IN (SELECT value FROM json_each(:ids)) "
                "RETURNING message_id",
                {**params, "ack": int(acknowledge)},
            ),
        ]
    )
    return MarkResult(
        marked_read=len(results[0]),
        acknowledged=len(results[1]),
        not_yours=sorted(set(message_ids) - mine),
    )


def get_thread(
    ctx: MailContext, thread_id: str, *, viewer: str | None = None, include_bodies: bool = True, limit: int = 50
) -> ThreadView:
    if not re.match(THREAD_ID, thread_id):
        raise InvalidInput(f"{thread_id[:80]!r} is not a thread id; message listings show each message's thread_id")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}, not {limit}")
    rows = ctx.store.query(
        f"""SELECT {_MESSAGE_COLUMNS}{", d.id AS delivery, d.read_at, d.acked_at" if viewer else ""} FROM messages m
        {"LEFT JOIN deliveries d ON d.message_id = m.id AND d.recipient = :viewer" if viewer else ""}
        WHERE m.thread_id = :thread ORDER BY m.id LIMIT :limit""",
        {"thread": thread_id, "viewer": viewer, "limit": limit + 1},
    )
    if not rows:
        raise NotFound(f"no messages in thread {thread_id}")
    participants = sorted(
        {r["sender"] for r in rows}
        | {
            r["recipient"]
            for r in ctx.store.query(
                "SELECT DISTINCT d.recipient FROM deliveries d JOIN messages m ON m.id = d.message_id "
                "WHERE m.thread_id = :thread",
                {"thread": thread_id},
            )
        }
    )
    # Read state is the viewer's own, so only messages delivered to the viewer have one.
    rows = [r if r.get("delivery") else {k: v for k, v in r.items() if k not in ("read_at", "acked_at")} for r in rows]
    return ThreadView(
        thread_id=thread_id,
        participants=participants,
        messages=[message_from_row(r, include_body=include_bodies) for r in rows[:limit]],
        more=len(rows) > limit,
    )
