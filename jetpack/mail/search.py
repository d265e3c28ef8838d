"""Full-text search over message subjects and bodies.

The caller's text is never handed to FTS5 as query syntax: it is split into words and each word
is quoted, so `NEAR(`, `OR`, `"`, `*` or `col:` are searched for as plain words. Engines without
FTS5 (``tursodb``) scan instead: the same messages (words also match inside longer words), ranked
by subject matches, then newest; slower on large stores.

Messages join the index in batches, not as they are sent (an FTS5 insert writes a new index
segment per transaction: 40% of a send): every search first adds what was sent since the last
batch, and the servers' sweep does the same every few seconds.
"""

from __future__ import annotations

import re

from jetpack.clock import to_datetime
from jetpack.errors import InvalidInput
from jetpack.mail.model import MailContext, SearchHit
from jetpack.store import DataLayer, GuardFailed, Row, Statement, expect
from jetpack.store.word_scan import excerpt, words_found_sql

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_QUERY = 500
MAX_WORDS = 16
INDEX_BATCH = 2000


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
        _index_since_mark(ctx.store, INDEX_BATCH)
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


def index_new_messages(store: DataLayer, *, batch: int = INDEX_BATCH) -> int:
    """Add the messages sent since the last batch to the full-text index; returns how many (message ids
    are never reused or deleted, so the marks count messages). Without FTS5: 0.

    Safe from any number of processes at once: a batch is written only if the mark it starts
    from is still the one it read, so no message is indexed twice.
    """
    return _index_since_mark(store, batch) if has_fts(store) else 0


def _index_since_mark(store: DataLayer, batch: int) -> int:
    """index_new_messages on a database known to have the index (and so its mark: both come from
    the FTS5 migrations, which are applied or skipped together)."""
    indexed = 0
    while True:
        mark = store.query(
            """SELECT indexed_through AS through, coalesce((SELECT max(id) FROM messages), 0) AS newest
            FROM mail_search_progress"""
        )[0]
        if mark["newest"] <= mark["through"]:
            return indexed
        through, upto = mark["through"], min(mark["newest"], mark["through"] + batch)
        span = {"through": through, "upto": upto}
        try:
            store.write(
                [
                    expect("(SELECT indexed_through FROM mail_search_progress) = :through", span),
                    Statement(
                        """INSERT INTO messages_fts(rowid, subject, body)
                        SELECT id, subject, body FROM messages WHERE id > :through AND id <= :upto""",
                        span,
                    ),
                    Statement("UPDATE mail_search_progress SET indexed_through = :upto", span),
                ]
            )
        except GuardFailed:
            continue  # another process indexed from this mark: look again
        indexed += upto - through
