"""Deciding, before answering, whether the retrieved passages answer the question at all.

Two steps, both measured per collection rather than fixed cosine constants:

1. **A relevance floor calibrated on the collection.** Forty everyday questions that no document
   collection is about ("How do I change a flat tyre?") are searched in it; the floor is the
   90th percentile of their best cosine similarities. A broad encyclopedia lifts the floor, a
   narrow handbook lowers it, and a question must beat what "about nothing here" scores in
   *this* collection. Cached per collection size.
2. **Answerability**: a logistic model over five features of the question and what retrieval
   found, trained offline on the bundled golden sets (`fit`, `chatworks eval calibrate`) and
   shipped as `answerability.json`: how far the best passage and the best sentence window sit
   above the floor, how much of the question's rare words the quoted window and all windows
   contain (IDF-weighted, IDF from the collection's own full-text index), and how much of the
   question's weight is on *topic* words the collection never uses ("Is there an *iPhone*
   app?"). A word the collection lacks counts only as far as it carries the question's topic
   (`topic_weights`): "so *strangers* cannot use my server" is a paraphrase, not a new topic.

Not covered: reading comprehension. The features are similarity and word statistics, so a
question about a person the documents mention, asking a fact they do not give ("How old is
X?"), often still passes: docs/evals.md measures how often.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from chatworks.rag.evidence import content_words
from chatworks.rag.retrieve import Retrieved
from chatworks.rag.types import Embedder, Index

MODEL_PATH = Path(__file__).with_name("answerability.json")

# Questions about everyday things no document collection is about. Their best similarities in
# a collection are its "nothing relevant here" distribution.
OFF_TOPIC_PROBES = (
    "How do I change a flat tyre?", "What should I cook for dinner tonight?",
    "How do I fix a leaking tap?", "What's a good name for a cat?",
    "How far is the moon from the earth?", "Recommend a good science fiction novel.",
    "How many legs does a spider have?", "Write a short poem about autumn.",
    "What time is it in Tokyo right now?", "Who painted the Mona Lisa?",
    "How do I learn to play the piano?", "What causes rain?", "Is coffee bad for you?",
    "What is the speed of light?", "How do I get red wine out of a carpet?",
    "What's the best way to train a puppy?", "How long should I boil an egg?",
    "Why is the sky blue?", "What is the capital of Peru?", "How do I knit a scarf?",
    "What are the rules of tennis?", "How do bees make honey?",
    "What is the best age to start running marathons?", "How do I grow tomatoes on a balcony?",
    "Which planet has the most moons?", "How do I fold a paper plane?",
    "What's the difference between a frog and a toad?", "How do I clean my oven?",
    "Tell me a joke about penguins.", "How do I say thank you in Japanese?",
    "What should I pack for a beach holiday?", "How do volcanoes erupt?",
    "How can I sleep better at night?", "What is the tallest animal?",
    "How do I make pancakes without eggs?", "Who invented the telephone?",
    "How do I tie a bow tie?", "What is a good stretching routine?",
    "Why do cats purr?", "How much water should I drink a day?",
)  # fmt: skip
FLOOR_PERCENTILE = 90


def relevance_floor(index: Index, embedder: Embedder, collection: str) -> float:
    """The 90th percentile of the off-topic probes' best cosine similarities in `collection`
    (0 for an empty collection)."""
    best = [hits[0].score if (hits := index.vector_search(v, 1, collection)) else 0.0
            for v in embedder.embed(list(OFF_TOPIC_PROBES))]  # fmt: skip
    return float(np.percentile(best, FLOOR_PERCENTILE))


@dataclass(frozen=True)
class Features:
    similarity_margin: float  # best passage cosine - floor
    window_margin: float  # best sentence-window score - floor
    window_coverage: float  # IDF share of the question's words in the quoted (first) window
    context_coverage: float  # ... in all the windows given to the answer
    # IDF share of the question's words that occur nowhere in the collection, each counted as
    # far as it carries the question's topic (`topic_weights`; all of it when not given)
    unknown_share: float


# A word's topicality is its cosine with the whole question (both embedded alone). Measured with
# MiniLM on the golden sets' words that their collection lacks (docs/log.md, 2026-12-05): filler
# and function words ("actually", "got", "friend") sit at -0.03-0.2, common verbs and adjectives
# ("slow", "visit", "strangers") at 0.1-0.35, the thing a question is about ("subscription",
# "license", "tkinter", "constituency") at 0.4-0.7. Below the ramp a word counts for nothing,
# above it in full, linearly between.
TOPIC_RAMP = (0.3, 0.5)
_NAME = re.compile(r"\w+")


def _looks_like_name(question: str, word: str) -> bool:
    """`word` is written as a name or identifier in `question`: capitalised after the first
    word ("an iPhone app", "with Grafana") or with an inner capital ("iPhone", "CPython")."""
    for m in _NAME.finditer(question):
        token = m.group(0)
        if token.lower() == word and (
            (m.start() > 0 and token[0].isupper()) or any(c.isupper() for c in token[1:])
        ):
            return True
    return False


def topic_weights(question: str, words: Sequence[str], embedder: Embedder) -> dict[str, float]:
    """How far each of `words` (lower-cased content words of `question`) carries the question's
    topic, 0..1: by its similarity to the question, through `TOPIC_RAMP`, except for names.
    A name the collection never mentions is the topic by construction (the question is about a
    thing the documents do not know), whatever its cosine says: "iphone" alone scores 0.42
    with its question, and at that weight the demo collection answered it (docs/log.md)."""
    if not words:
        return {}
    vectors = embedder.embed([question, *words])
    low, high = TOPIC_RAMP
    weights = {}
    for word, vector in zip(words, vectors[1:], strict=True):
        ramp = (float(vector @ vectors[0]) - low) / (high - low)
        weights[word] = 1.0 if _looks_like_name(question, word) else min(max(ramp, 0.0), 1.0)
    return weights


def features(
    question: str,
    best_similarity: float,
    windows: Sequence[Retrieved],
    floor: float,
    term_counts: tuple[int, dict[str, int]],
    topic: Mapping[str, float] | None = None,
) -> Features:
    """`term_counts` is `Index.term_counts(sorted(content_words(question)), collection)`;
    `topic` is `topic_weights` of the words it counts 0 times (missing words weigh 1)."""
    topic = topic or {}
    total, counts = term_counts
    # Robertson-Sparck Jones IDF with +0.5 smoothing: a word in no chunk weighs the most.
    idf = {w: math.log((total + 1) / (n + 0.5)) for w, n in counts.items()}
    weight = sum(idf.values()) or 1.0

    def coverage(text: str) -> float:
        present = content_words(text)
        return sum(v for w, v in idf.items() if w in present) / weight

    first = windows[0].hit.chunk.text if windows else ""
    return Features(
        similarity_margin=best_similarity - floor,
        window_margin=(windows[0].score if windows else 0.0) - floor,
        window_coverage=coverage(first),
        context_coverage=coverage(" ".join(w.hit.chunk.text for w in windows)),
        unknown_share=sum(v * topic.get(w, 1.0) for w, v in idf.items() if not counts[w]) / weight,
    )


def question_terms(question: str) -> list[str]:
    return sorted(content_words(question))


def unknown_terms(term_counts: tuple[int, dict[str, int]]) -> list[str]:
    """The counted words that occur nowhere in the collection."""
    return [w for w, n in term_counts[1].items() if n == 0]


@dataclass(frozen=True)
class AnswerabilityModel:
    weights: dict[str, float]  # by Features field name
    bias: float
    threshold: float  # answer when probability >= threshold
    trained_on: str = ""

    def probability(self, f: Features) -> float:
        z = self.bias + sum(self.weights[k] * v for k, v in asdict(f).items())
        return 1.0 / (1.0 + math.exp(-z))

    def answerable(self, f: Features) -> bool:
        return self.probability(f) >= self.threshold

    def save(self, path: Path = MODEL_PATH) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path = MODEL_PATH) -> AnswerabilityModel:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def fit(
    samples: Sequence[Features], answerable: Sequence[bool], *, max_false_refusals: float,
    trained_on: str = "",
) -> AnswerabilityModel:  # fmt: skip
    """Logistic regression (scikit-learn, L2, balanced classes) on the samples; the threshold
    is the highest that refuses at most `max_false_refusals` of the answerable samples, so the
    trade-off is stated as the error users mind most (a refused answerable question)."""
    from sklearn.linear_model import LogisticRegression

    names = [f.name for f in fields(Features)]
    x = np.array([[getattr(s, n) for n in names] for s in samples])
    y = np.array(answerable, dtype=bool)
    regression = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000).fit(x, y)
    weights = dict(zip(names, regression.coef_[0].round(4).tolist(), strict=True))
    model = AnswerabilityModel(weights, round(float(regression.intercept_[0]), 4), 0.5, trained_on)
    positives = np.sort([model.probability(s) for s, a in zip(samples, y, strict=True) if a])
    allowed = int(max_false_refusals * len(positives))  # answerable ones we may refuse
    threshold = float(positives[allowed]) if len(positives) else 0.5
    return AnswerabilityModel(model.weights, model.bias, round(threshold - 1e-4, 4), trained_on)
