"""What every memory service function needs, and the record of which model made the vectors."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from jetpack.clock import Clock, SystemClock
from jetpack.config import MemorySettings, Settings
from jetpack.errors import Conflict
from jetpack.memory.embedders import Embedder, create_embedder
from jetpack.memory.index import VectorIndex, index_for
from jetpack.store import DataLayer, Statement


@dataclass
class MemoryContext:
    store: DataLayer
    embedder: Embedder
    settings: MemorySettings = field(default_factory=MemorySettings)
    clock: Clock = field(default_factory=SystemClock)
    index: VectorIndex | None = None

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

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.embedder.embed(texts)

    def embed_one(self, text: str) -> np.ndarray:
        return np.asarray(self.embed([text])[0], dtype=np.float32)

    def recorded_model(self) -> str | None:
        rows = self.store.query("SELECT value FROM meta WHERE key = 'memory_model'")
        return str(rows[0]["value"]) if rows else None

    def check_model(self) -> None:
        """Refuse to mix vectors of different models in one store (they are not comparable)."""
        recorded = self.recorded_model()
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
