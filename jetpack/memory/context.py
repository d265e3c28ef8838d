"""What every memory service function needs, and the record of which model made the vectors."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from jetpack.clock import Clock, SystemClock
from jetpack.config import MemorySettings, Settings
from jetpack.errors import Conflict
from jetpack.lazy import np
from jetpack.memory.embedders import Embedder, create_embedder
from jetpack.memory.index import VectorIndex, index_for
from jetpack.store import DataLayer, Statement

EMBED_CACHE_SIZE = 4_096
MODEL_CHECK_SECONDS = 60.0
NO_MEMORIES_RECHECK_SECONDS = 1.0


@dataclass
class MemoryContext:
    store: DataLayer
    embedder: Embedder
    settings: MemorySettings = field(default_factory=MemorySettings)
    clock: Clock = field(default_factory=SystemClock)
    index: VectorIndex | None = None
    # Called after an outcome joins the backlog; a server's BacklogWorker sets it (poke). None: drain at once.
    on_outcome: Callable[[], None] | None = None
    _recent: OrderedDict[str, np.ndarray] = field(default_factory=OrderedDict, repr=False)
    _recent_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _model_checked_at: float | None = field(default=None, repr=False)
    _has_fts: bool | None = field(default=None, repr=False)
    _none_until: float = field(default=0.0, repr=False)  # "no memories yet" holds until then (monotonic)
    _some: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.index is None:
            self.index = index_for(self.store)

    @property
    def vectors(self) -> VectorIndex:
        assert self.index is not None
        return self.index

    @classmethod
    def for_settings(
        cls, settings: Settings, store: DataLayer, clock: Clock | None = None, embedder: Embedder | None = None
    ) -> MemoryContext:
        """Cheap: the embedding model loads on the first memory call, not here."""
        return cls(
            store=store,
            embedder=embedder or create_embedder(settings.memory.embedder),
            settings=settings.memory,
            clock=clock or SystemClock(),
        )

    def now(self) -> int:
        return self.clock.now_ms()

    def saw_memory(self) -> None:
        self._some = True

    def has_memories(self) -> bool:
        """Whether any memory exists: every claim asks (before running the model), so the answer is
        kept — "yes" for good (memories are rarely all forgotten, and recall then finds nothing
        anyway), "not yet" for a second (a first memory written by another process is seen within one)."""
        if self._some:
            return True
        if time.monotonic() < self._none_until:
            return False
        self._some = bool(self.store.query("SELECT 1 FROM memories LIMIT 1"))
        self._none_until = time.monotonic() + NO_MEMORIES_RECHECK_SECONDS
        return self._some

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.embedder.embed(texts)

    def embed_recent(self, texts: list[str]) -> np.ndarray:
        """Like embed, but recently embedded texts come from a small cache: procedural learning re-reads
        the same outcome sentences after every completion in a busy area."""
        with self._recent_lock:
            known = {t: self._recent[t] for t in texts if t in self._recent}
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            known.update(zip(missing, np.asarray(self.embedder.embed(missing), dtype=np.float32), strict=True))
        rows = [known[t] for t in texts]
        with self._recent_lock:
            for text in dict.fromkeys(texts):
                self._recent[text] = known[text]
                self._recent.move_to_end(text)
            while len(self._recent) > EMBED_CACHE_SIZE:
                self._recent.popitem(last=False)
        if not rows:
            return np.zeros((0, self.embedder.dimension), dtype=np.float32)
        return np.stack(rows)

    def embed_one(self, text: str) -> np.ndarray:
        return np.asarray(self.embed([text])[0], dtype=np.float32)

    def has_full_text_index(self) -> bool:
        """Whether memories_fts exists (engines without FTS5 scan instead); asked once per context."""
        if self._has_fts is None:
            self._has_fts = bool(self.store.query("SELECT 1 FROM sqlite_master WHERE name = 'memories_fts'"))
        return self._has_fts

    def recorded_model(self) -> str | None:
        rows = self.store.query("SELECT value FROM meta WHERE key = 'memory_model'")
        return str(rows[0]["value"]) if rows else None

    def check_model(self) -> None:
        """Refuse to mix vectors of different models in one store (they are not comparable). A match is
        trusted for MODEL_CHECK_SECONDS (one read less per memory call; a round trip on a remote store)."""
        if self._model_checked_at is not None and time.monotonic() - self._model_checked_at < MODEL_CHECK_SECONDS:
            return
        recorded = self.recorded_model()
        if recorded == self.model_record():
            self._model_checked_at = time.monotonic()
        if recorded is not None and recorded != self.model_record():
            raise Conflict(
                f"the stored memories were embedded with {recorded}, but this server uses "
                f"{self.model_record()} (memory.embedder); run `jetpack memory reindex` to re-embed them, "
                "or switch memory.embedder back"
            )

    def model_record(self) -> str:
        return f"{self.embedder.family}/{self.embedder.dimension}"

    def record_model(self) -> list[Statement]:
        """Statements that note which model made the stored vectors (kept with the first write)."""
        return [
            Statement(
                "INSERT INTO meta(key, value) SELECT 'memory_model', :model "
                "WHERE NOT EXISTS (SELECT 1 FROM meta WHERE key = 'memory_model')",
                {"model": self.model_record()},
            )
        ]
