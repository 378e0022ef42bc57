"""Flag instruction-like text inside documents (indirect prompt injection).

A small, explicit rule set over chunk text; each rule has a name that lands in the chunk's
metadata (`{"injection": ["ignore-instructions", ...]}`) so answers, evals and the UI can see
why. Flagging is advisory: the answer prompt treats every source as quoted data anyway, and a
flag lets it (or a reviewer) be stricter with that chunk. Documents *about* prompt injection
will be flagged too; that is the intended trade-off.
`detect()` adds a small classifier (`injection_model.py`: n-grams joined with a head over MiniLM
embeddings) that catches rephrasings the rules miss; ingestion and `/v1/moderations` both use
it, so a chunk and a prompt are judged alike.
Not covered: most non-English phrasings, instructions hidden in images.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from chatworks.rag import injection_model


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern[str]
    why: str


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE | re.DOTALL)


RULES: tuple[Rule, ...] = (
    Rule(
        "ignore-instructions",
        _rx(
            r"\b(ignore|disregard|forget|override|bypass)\b[^.\n]{0,40}?"
            r"\b(previous|prior|above|earlier|preceding|all|any|your|the|system)\b[^.\n]{0,30}?"
            r"\b(instructions?|prompts?|rules|directions|guidelines|directives)\b"
        ),
        "tells the model to drop its instructions",
    ),
    Rule(
        "role-override",
        _rx(
            r"\byou are (now|no longer)\s+(an?|the|in|my|no|free|not|dan|jailbroken|unrestricted)\b"
            r"|\bfrom now on,?\s+(you|act|respond|answer)\b"
            r"|\b(act|behave|respond) as (an? )?(unrestricted|unfiltered|jailbroken|evil|dan)\b"
            r"|\b(developer|god|dan|jailbreak) mode\b"
        ),
        "tries to give the model a new role",
    ),
    Rule(
        "prompt-leak",
        _rx(
            r"\b(reveal|print|show|repeat|output|leak|disclose|tell me)\b[^.\n]{0,30}?"
            r"\b(system prompt|system message|initial instructions|hidden instructions"
            r"|your instructions)\b"
        ),
        "asks for the system prompt",
    ),
    Rule(
        "chat-markup",
        re.compile(
            r"<\|(im_start|im_end|system|user|assistant|endoftext)\|>|\[/?INST\]|<</?SYS>>"
            # "System: you are..." starts a fake turn; "System: Linux" in a spec table does not.
            # One run of blanks, then an optional heading: two adjacent `[ \t]*` around an
            # optional `#` would try every split of a long blank run (quadratic; chat input
            # can be 100k characters).
            r"|^[ \t]*(?:#{1,3}[ \t]*)?(system|assistant)[ \t]*:"
            r"[ \t]*(you|ignore|disregard|from now)\b",
            re.IGNORECASE | re.MULTILINE,
        ),
        "chat-template or role markers that fake a conversation turn",
    ),
    Rule(
        "addressed-to-ai",
        _rx(
            r"\b(note|message|instructions?|attention|important)\s+(to|for)\s+(the\s+)?"
            r"(ai|assistant|llm|language model|chatbot|model|agent)s?\b"
            r"|\b(new|updated|real|actual|secret) instructions?\s*:"
        ),
        "text addressed to the model rather than to a reader",
    ),
    Rule(
        "concealment",
        _rx(
            r"\b(do not|don't|never)\s+(tell|inform|mention|reveal|let)\b[^.\n]{0,20}?"
            r"\b(the )?user\b|\bwithout (telling|informing|notifying) the user\b"
        ),
        "asks the model to hide something from the user",
    ),
    Rule(
        "exfiltration-link",
        _rx(
            # A Markdown image is fetched as soon as a chat UI renders it: with data in its
            # query string it leaks that data without a click.
            # (Repeats are bounded: an unbounded one rescans the rest of a long input from every
            # `![` or `http`, which is quadratic on chat input of 100k characters.)
            r"!\[[^\]]{0,300}\]\(\s*https?://[^)\s]{0,2000}\?[^)\s]{0,2000}="
            # URLs that ask to be filled in with conversation data.
            r"|https?://\S{0,2000}[?&][\w-]+=\s*"
            r"(\{[^}]{0,200}\}|<[^>]{0,200}>|\$\w+|\[[A-Z_ ]{1,50}\])"
            r"|\b(send|post|upload|forward|exfiltrate)\b[^.\n]{0,40}?"
            r"\b(conversation|chat history|password|api key|credentials|secrets?|user data)\b"
            r"[^.\n]{0,40}?\bhttps?://"
        ),
        "a link built to carry data out",
    ),
    Rule(
        "hidden-characters",
        # Zero-width space and invisible operators, bidi overrides, and Unicode "tag"
        # characters that smuggle invisible ASCII: nothing a reader sees, only a model.
        # ZWJ/ZWNJ are left out: emoji and several scripts use them legitimately.
        re.compile("[\u200b\u202a-\u202e\u2060-\u2064\u2066-\u2069\U000e0000-\U000e007f]"),
        "invisible characters that can carry instructions",
    ),
)


CLASSIFIER = "classifier"  # the flag name when the classifier, not a rule, fires


def scan(text: str) -> list[str]:
    """Names of the rules `text` matches, in rule order; empty when it looks clean."""
    return [rule.name for rule in RULES if rule.pattern.search(text)]


@dataclass(frozen=True)
class Verdict:
    rules: list[str]  # the rules that matched
    score: float  # the classifier's score, in [0, 1]
    threshold: float  # the classifier's threshold (chosen at training for <=2% false positives)

    @property
    def by_classifier(self) -> bool:
        return self.score >= self.threshold

    @property
    def flagged(self) -> bool:
        return bool(self.rules) or self.by_classifier

    @property
    def flags(self) -> list[str]:
        """Rule names, then `classifier` if it fired: what a flagged chunk's metadata holds."""
        return [*self.rules, CLASSIFIER] if self.by_classifier else list(self.rules)

    @property
    def confidence(self) -> float:
        """One score for both: a rule match is certain, else the classifier's score."""
        return 1.0 if self.rules else self.score


def preload() -> None:
    """Load the shipped classifier, and the MiniLM its embedding head reads, now rather than
    when the first text is judged (seconds, and ~170 MB the first request should not pay)."""
    if injection_model.load().head is not None:
        injection_model.encoder()


def detect(text: str, classifier: bool = True,
           model: injection_model.InjectionModel | None = None) -> Verdict:  # fmt: skip
    """The rules, plus the classifier unless `classifier=False` (the rules-only baseline);
    `model` replaces the shipped one (the benchmark measures a candidate with it)."""
    return detect_many([text], classifier, model)[0]


def detect_many(texts: Sequence[str], classifier: bool = True,
                model: injection_model.InjectionModel | None = None,
                known: injection_model.Embedded | None = None) -> list[Verdict]:  # fmt: skip
    """`detect` for several texts, their embeddings computed in one batch (a document's chunks:
    one at a time, MiniLM's per-call cost would dominate ingestion). `known`: an embedder and
    a vector per text, used when it is the guard's own MiniLM (ingestion passes the vectors it
    stores, so a chunk is embedded once)."""
    if not classifier:
        return [Verdict(scan(text), 0.0, 1.0) for text in texts]
    model = model or injection_model.load()
    vectors = (injection_model.window_vectors(texts, known) if model.head is not None
               else [None] * len(texts))  # fmt: skip
    return [Verdict(scan(text), model.score(text, v), model.threshold)
            for text, v in zip(texts, vectors, strict=True)]  # fmt: skip
