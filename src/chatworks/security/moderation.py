"""Moderation: is a text a prompt injection, does it hold personal data, and what the chat guard
does about it (flag, block, or redact) per category.

One function judges a text (`moderate`) for both `POST /v1/moderations` and the guard on chat
input; ingestion uses the same injection detector (`rag/injection.detect`), so a prompt and a
document chunk are judged alike. Not covered: toxicity, self-harm and the other OpenAI
categories (no offline model for them here), and model output (it is not guarded).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal

from chatworks.rag.injection import Verdict, detect
from chatworks.security import pii
from chatworks.telemetry import metrics

PROMPT_INJECTION, PII = "prompt_injection", "pii"
CATEGORIES = (PROMPT_INJECTION, PII)

InjectionAction = Literal["flag", "block", "off"]
PiiAction = Literal["flag", "block", "redact", "off"]


@dataclass(frozen=True)
class Moderation:
    injection: Verdict
    spans: list[pii.Span]

    @property
    def categories(self) -> dict[str, bool]:
        return {PROMPT_INJECTION: self.injection.flagged, PII: bool(self.spans)}

    @property
    def category_scores(self) -> dict[str, float]:
        return {PROMPT_INJECTION: round(self.injection.confidence, 4),
                PII: 1.0 if self.spans else 0.0}  # fmt: skip

    @property
    def flagged(self) -> bool:
        return any(self.categories.values())

    @property
    def pii_kinds(self) -> list[str]:
        return sorted({s.kind for s in self.spans})


# A conversation sends its earlier turns again with every request, and judging a long one is
# hundreds of ms (spaCy's NER, MiniLM's windows): each text is judged once, then remembered.
# 256 texts: at most ~26 MB at the 100k-character input limit.
@functools.lru_cache(maxsize=256)
def moderate(text: str, classifier: bool = True) -> Moderation:
    """The verdicts on `text` (cached: treat the result as read-only)."""
    return Moderation(detect(text, classifier), pii.find(text))


def count(result: Moderation, source: str) -> None:
    for category, hit in result.categories.items():
        if hit:
            metrics.MODERATION_FLAGGED.labels(category, source).inc()


class Blocked(Exception):
    """The guard refused the input; `category` says why."""

    def __init__(self, category: str, message: str):
        super().__init__(message)
        self.category = category


@dataclass
class Guarded:
    texts: list[str]  # the input, with PII redacted when the action says so
    flagged: list[str] = field(default_factory=list)  # categories found (any action but off)
    pii_kinds: list[str] = field(default_factory=list)


def guard(texts: list[str], injection: InjectionAction, pii_action: PiiAction) -> Guarded:
    """Judges the caller's texts (user turns, a prompt) and applies the actions: `block`
    raises `Blocked`, `redact` replaces PII by `[EMAIL]`-style markers, `flag` only reports."""
    out = Guarded(list(texts))
    if injection == "off" and pii_action == "off":
        return out
    for i, text in enumerate(texts):
        found = moderate(text, classifier=injection != "off")
        if injection != "off" and found.injection.flagged:
            metrics.MODERATION_FLAGGED.labels(PROMPT_INJECTION, "chat").inc()
            out.flagged.append(PROMPT_INJECTION)
            if injection == "block":
                raise Blocked(PROMPT_INJECTION, "the input looks like a prompt injection")
        if pii_action != "off" and found.spans:
            metrics.MODERATION_FLAGGED.labels(PII, "chat").inc()
            out.flagged.append(PII)
            out.pii_kinds += found.pii_kinds
            if pii_action == "block":
                kinds = ", ".join(found.pii_kinds)
                raise Blocked(PII, f"the input contains personal data or secrets ({kinds})")
            if pii_action == "redact":
                out.texts[i] = pii.redact(text, found.spans)
    out.flagged = sorted(set(out.flagged))
    out.pii_kinds = sorted(set(out.pii_kinds))
    return out
