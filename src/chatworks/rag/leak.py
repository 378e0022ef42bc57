"""The output check for system-prompt leakage (OWASP LLM07): does an answer reproduce a long
span of the server's own system prompt?

A span is `MIN_WORDS` consecutive words, compared case- and punctuation-blind, so reflowed or
re-cased echoes count. Words the answer may legitimately repeat are not evidence: a span
that also stands in the allowed texts (the sources and question the model was given, the
refusal it is told to write word for word) is left out, so quoting a document that happens to
contain the prompt (chatworks' own docs do) is not a leak.

The prompt holds no secret today (docs/security/threat-model.md, LLM07); the check exists so
that an operator who puts instructions there learns when a model recites them, and so that
the recital never reaches the user as an answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Eight words: a long enough run that ordinary prose sharing a phrase with the prompt ("the
# sources below") never matches, short enough that a paraphrase keeping one clause does.
MIN_WORDS = 8
_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _spans(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def echoed_span(
    answer: str, system_prompt: str, allowed: Iterable[str] = (), n: int = MIN_WORDS
) -> str | None:
    """The first run of `n` words of `system_prompt` that `answer` repeats and no allowed text
    contains, or None."""
    secret = _spans(_words(system_prompt), n)
    for text in allowed:
        secret -= _spans(_words(text), n)
    words = _words(answer)
    for i in range(len(words) - n + 1):
        if tuple(words[i : i + n]) in secret:
            return " ".join(words[i : i + n])
    return None
