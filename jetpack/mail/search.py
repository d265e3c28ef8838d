"""Full-text search over message subjects and bodies.

The caller's text is never handed to FTS5 as query syntax: it is split into words and each word
is quoted, so `NEAR(`, `OR`, `"`, `*` or `col:` are searched for as plain words. Engines without
FTS5 (``tursodb``) scan instead: the same messages (words also match inside longer words), ranked
by subject matches, then newest; slower on large stores.
"""

from __future__ import annotations

import re

from jetpack.clock import to_datetime
from jetpack.errors import InvalidInput
from jetpack.mail.model import MailContext, SearchHit
from jetpack.store import DataLayer, Row
from jetpack.store.word_scan import excerpt, words_found_sql

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_QUERY = 500
MAX_WORDS = 16


def search_mail(ctx: MailContext, query: str, *, limit: int = 20) -> list[SearchHit]:
    """Messages whose subject or body contain every word of ``query``, best matches first."""
    if len(query) > MAX_QUERY:
        raise InvalidInput(f"query is {len(query)} characters; keep it under {MAX_QUERY}")
    words = _WORD.findall(query)
    if not words:
        raise InvalidInput("query has no words to search for; give one or more words, e.g. 'migration failed'")
    if len(words) > MAX_WORDS:
        raise InvalidInput(f"query has {len(words)} words; use at most {MAX_WORDS}")
    if not 1 <= limit <= 100:
        raise InvalidInput(f"limit must be between 1 and 100, not {limit}")
    if has_fts(ctx.store):
        match = " ".join('"' + w.replace('"', '""') + '"' for w in words)
        rows = ctx.store.query(
            """SELECT m.id, m.thread_id, m.sender, m.subject, m.created_at,
                      snippet(messages_fts, 1, '[', ']', '…', 12) AS snippet
            FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid
            WHERE messages_fts MATCH :match ORDER BY bm25(messages_fts), m.id DESC LIMIT :limit""",
            {"match": match, "limit": limit},
        )
    else:
        rows = _scan(ctx.store, words, limit)
    return [
        SearchHit(
            id=r["id"],
            thread_id=r["thread_id"],
            sender=r["sender"],
            subject=r["subject"],
            snippet=r["snippet"] or "",
            created_at=to_datetime(r["created_at"]),
        )
        for r in rows
    ]


def _scan(store: DataLayer, words: list[str], limit: int) -> list[Row]:
    """Without FTS5: messages holding every word in the subject or body; those with more of the
    words in the subject first, then the newest."""
    found, params = words_found_sql(["m.subject", "m.body"], words)
    in_subject, _ = words_found_sql(["m.subject"], words)
    rows = store.query(
        f"""SELECT m.id, m.thread_id, m.sender, m.subject, m.created_at, m.body FROM messages m
        WHERE {found} = :all ORDER BY {in_subject} DESC, m.id DESC LIMIT :limit""",
        {**params, "all": len(words), "limit": limit},
    )
    return [{**r, "snippet": excerpt(r["body"], words)} for r in rows]


def has_fts(store: DataLayer) -> bool:
    """Whether this database carries the FTS5 message index (migration 3 is skipped without FTS5)."""
    return bool(store.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'messages_fts'"))
