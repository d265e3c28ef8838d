"""Full-text search without FTS5: portable SQL that counts a query's words in text columns.

Engines without FTS5 (``tursodb``) skip the full-text migrations; mail search and memory recall
then scan with this instead. A word matches where it occurs case-insensitively (ASCII case, as
SQLite's ``lower``), also inside longer words: callers that care re-rank by whole words
(:func:`whole_words`). Slower than an index on large stores, same answers on small ones.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"\w+", re.UNICODE)
EXCERPT_CHARS = 100


def words_found_sql(columns: Sequence[str], words: Sequence[str], prefix: str = "w") -> tuple[str, dict[str, str]]:
    """A SQL expression counting how many of ``words`` occur in any of ``columns``, and its parameters."""
    params = {f"{prefix}{i}": word.lower() for i, word in enumerate(words)}
    terms = ["(" + " OR ".join(f"instr(lower({column}), :{name}) > 0" for column in columns) + ")" for name in params]
    return " + ".join(terms) if terms else "0", params


def whole_words(text: str, words: Sequence[str]) -> int:
    """How many of ``words`` occur in ``text`` as whole words (case-insensitive)."""
    tokens = set(_WORD.findall(text.lower()))
    return sum(1 for word in dict.fromkeys(w.lower() for w in words) if word in tokens)


def excerpt(text: str, words: Sequence[str], width: int = EXCERPT_CHARS) -> str:
    """About ``width`` characters of ``text`` around the first of ``words``, each occurrence in
    [brackets] and cut ends marked …, like FTS5's ``snippet``."""
    lowered = text.lower()
    hits = [i for i in (lowered.find(w.lower()) for w in words) if i >= 0]
    start = max(0, min(hits) - width // 3) if hits else 0
    end = min(len(text), start + width)
    if start > 0:
        space = text.find(" ", start, start + 20)
        start = space + 1 if space >= 0 else start
    if end < len(text):
        space = text.rfind(" ", end - 20, end)
        end = space if space > start else end
    pattern = re.compile("|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)), re.IGNORECASE)
    marked = pattern.sub(lambda m: f"[{m[0]}]", text[start:end]) if words else text[start:end]
    return ("…" if start > 0 else "") + marked + ("…" if end < len(text) else "")
