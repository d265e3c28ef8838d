"""Full-text search over message subjects and bodies.

The caller's text is never handed to FTS5 as query syntax: it is split into words and each word
is quoted, so `NEAR(`, `OR`, `"`, `*` or `col:` are searched for as plain words. Engines without
FTS5 (the libSQL server we test against) get the same results from a plain scan, slower.
"""

from __future__ import annotations

import re

from jetpack.clock import to_datetime
from jetpack.errors import InvalidInput
from jetpack.mail.model import MailContext, SearchHit
from jetpack.store import DataLayer

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
        conditions = " AND ".join(
            f"(instr(lower(m.subject), :w{i}) > 0 OR instr(lower(m.body), :w{i}) > 0)" for i in range(len(words))
        )
        params: dict[str, object] = {f"w{i}": w.lower() for i, w in enumerate(words)}
        rows = ctx.store.query(
            f"""SELECT m.id, m.thread_id, m.sender, m.subject, m.created_at, substr(m.body, 1, 120) AS snippet
            FROM messages m WHERE {conditions} ORDER BY m.id DESC LIMIT :limit""",
            {**params, "limit": limit},
        )
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


def has_fts(store: DataLayer) -> bool:
    """Whether this database carries the FTS5 message index (migration 3 is skipped without FTS5)."""
    return bool(store.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'messages_fts'"))
