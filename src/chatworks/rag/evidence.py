"""Evidence: the sentences of the retrieved passages that answer the question, and the spans of
an answer that tie it to a passage.

Covers: splitting a passage into sentences with document offsets, choosing the few sentence
windows that best match the question (`focus`), and the key spans of a text (numbers, names,
identifiers, quoted strings) that attribution compares. Does not cover: retrieval itself
(`retrieve.py`) or the prompt and citations (`answer.py`).

Why narrow passages to windows: a 135M model given five 200-token passages often answers from
the wrong one or from none; given the three sentences nearest the question it copies the fact.
The prompt is also a fifth as long, and prefill is most of a grounded answer's latency on a CPU.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from chatworks.rag.retrieve import Retrieved
from chatworks.rag.types import Embedder

# A sentence ends at ., ! or ? before whitespace, or at a blank line (headings, list items and
# code blocks in Markdown/reST are separated by them). Single newlines are re-wrapped prose.
_BOUNDARY = re.compile(r"(?<=[.!?])\s+(?=\S)|\n\s*\n")
_WORD = re.compile(r"\w+")
# Key spans: numbers (with units or separators), identifiers with _ . / - or inner capitals,
# capitalised words, and quoted or backticked strings.
_KEY_SPAN = re.compile(
    r"`[^`\n]{2,60}`|\"[^\"\n]{2,60}\"|"  # quoted
    r"[£$€]?\d[\d.,:/%-]*\w*|"  # numbers, amounts, dates, versions
    r"\b\w+(?:[_./-]\w+)+\b|\b[a-z]+[A-Z]\w*\b|"  # identifiers
    r"\b[A-Z][\w'-]+\b"  # names
)
_STOP = ENGLISH_STOP_WORDS  # scikit-learn's list (a sentence-transformers dependency)


@dataclass(frozen=True)
class Sentence:
    text: str
    start: int  # document offsets, like Chunk.start/end
    end: int


def sentences(text: str, offset: int = 0) -> list[Sentence]:
    """The sentences of `text`, stripped, with offsets into the document (`offset` is where
    `text` starts in it)."""
    out, start = [], 0
    for boundary in [*_BOUNDARY.finditer(text), None]:
        end = boundary.start() if boundary else len(text)
        piece = text[start:end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            body = piece.strip()
            out.append(Sentence(body, offset + start + lead, offset + start + lead + len(body)))
        start = boundary.end() if boundary else len(text)
    return out


def content_words(text: str) -> set[str]:
    return {w for w in (m.lower() for m in _WORD.findall(text)) if w not in _STOP and len(w) > 1}


def key_spans(text: str) -> set[str]:
    """Distinctive spans of `text`, lower-cased: what an answer must share with its source.
    Sentence-initial capitals are kept: in short answers they are usually names anyway."""
    spans = {m.group(0).strip('`"').rstrip(".,:;/-").lower() for m in _KEY_SPAN.finditer(text)}
    return {s for s in spans if s not in _STOP and len(s) > 1}


def focus(
    question: str,
    passages: Sequence[Retrieved],
    embedder: Embedder,
    *,
    keep: int = 3,
    neighbours: int = 1,
    lexical_weight: float = 0.5,
    rank_weight: float = 0.3,
) -> list[Retrieved]:
    """At most `keep` windows of `passages` for `question`, best first, as narrowed passages
    (same chunk id, document and section; text and offsets of the window). A window is a good
    sentence with `neighbours` sentences on either side; a good sentence touching a chosen
    window widens it instead, and all windows together hold at most keep x (2 x neighbours + 1)
    sentences. Sentences are scored by cosine similarity to the question plus `lexical_weight`
    times the share of the question's content words they contain plus `rank_weight` times their
    passage's retrieval score relative to the best passage's."""
    units = [(i, s) for i, p in enumerate(passages)
             for s in sentences(p.hit.chunk.text, p.hit.chunk.start)]  # fmt: skip
    if not units:
        return list(passages[:keep])
    # A sentence is embedded under its section heading, as chunks are at ingestion: the command
    # line in "Train your own model" shares no words with "how do I train a model?", its
    # heading does.
    headed = [_headed(passages[i].hit.chunk.section, s.text) for i, s in units]
    vectors = embedder.embed([question, *headed])
    similarity = vectors[1:] @ vectors[0]
    asked = content_words(question)
    lexical = np.array(
        [len(asked & content_words(s.text)) / len(asked) if asked else 0.0 for _, s in units]
    )
    # Retrieval's own verdict counts too: a sentence of the best passage beats an equally
    # similar one from the fifth (measured: demo containment 0.46 -> 0.54, BBC 0.84 -> 0.87).
    top = passages[0].score or 1.0
    retrieval = np.array([passages[i].score / top for i, _ in units])
    scores = similarity + lexical_weight * lexical + rank_weight * retrieval
    windows: list[list] = []  # [passage, first unit, last unit, best score], best first
    budget = keep * (2 * neighbours + 1)  # sentences in all, so merged windows stay short
    for u in np.argsort(-scores):
        p = units[u][0]
        lo, hi = u, u
        while lo > 0 and units[lo - 1][0] == p and u - lo < neighbours:
            lo -= 1
        while hi + 1 < len(units) and units[hi + 1][0] == p and hi - u < neighbours:
            hi += 1
        # A good sentence next to a chosen window joins it (the fact is often the sentence
        # after the one that matched the question best) rather than being dropped.
        near = next((w for w in windows if w[0] == p and lo <= w[2] + 1 and w[1] - 1 <= hi), None)
        if near is not None:
            near[1], near[2] = min(near[1], lo), max(near[2], hi)
        elif len(windows) < keep:
            windows.append([p, lo, hi, float(scores[u])])
        if sum(w[2] - w[1] + 1 for w in windows) >= budget:
            break
    return [_window(passages[p], units[lo][1], units[hi][1], score)
            for p, lo, hi, score in windows]  # fmt: skip


def _headed(section: str | None, text: str) -> str:
    return f"{section}: {text}" if section else text


def _window(passage: Retrieved, first: Sentence, last: Sentence, score: float) -> Retrieved:
    chunk = passage.hit.chunk
    local = slice(first.start - chunk.start, last.end - chunk.start)
    narrowed = replace(chunk, text=chunk.text[local], start=first.start, end=last.end)
    return Retrieved(replace(passage.hit, chunk=narrowed), score)
