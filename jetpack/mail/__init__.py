"""Agent Mail: messages and threads between agents, people and the system, with intents."""

from jetpack.mail.inbox import attention, attention_notice, fetch_inbox, get_thread, mark_mail
from jetpack.mail.messages import send_mail, subscribe_topics
from jetpack.mail.model import (
    SYSTEM_SENDER,
    Importance,
    InboxPage,
    MailContext,
    MarkResult,
    MessageView,
    NewMessage,
    SearchHit,
    Sender,
    SenderKind,
    SentMessage,
    ThreadView,
)
from jetpack.mail.search import index_new_messages, search_mail

__all__ = [
    "SYSTEM_SENDER",
    "Importance",
    "InboxPage",
    "MailContext",
    "MarkResult",
    "MessageView",
    "NewMessage",
    "SearchHit",
    "Sender",
    "SenderKind",
    "SentMessage",
    "ThreadView",
    "attention",
    "attention_notice",
    "fetch_inbox",
    "get_thread",
    "index_new_messages",
    "mark_mail",
    "search_mail",
    "send_mail",
    "subscribe_topics",
]
