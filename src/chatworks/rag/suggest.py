"""Questions to suggest for a collection: made from its own headings, kept only when asking them
gets an answer from the section they were made from.

A new user's first click should show what grounded answers do well, so suggestions are not a
fixed list: each heading of the collection becomes a question ("Deploy it" under "chatworks"
-> "How do I deploy chatworks?", "The two commands" -> "What are the two commands?"), and a
question is kept only if the grounded pipeline answers it (not refused) from a passage of that
same section. How-to questions come first (a task is what a reader of docs asks about), then
documents near the collection's root before deep ones, in reading order, at most two per
document. Not covered: phrasing beyond these templates (no model writes them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chatworks.rag.types import Hit
from chatworks.storage.documents import Section

# A heading names a task ("Deploy it", "Train your own model") when it starts with a common
# task verb, or with any word followed by an object's determiner ("Request a badge").
_OBJECT_STARTS = frozenset({
    "a", "an", "the", "it", "its", "your", "my", "our", "this", "these", "those", "them", "one",
    "all", "every", "any", "up", "out",
})  # fmt: skip
_TASK_VERBS = frozenset({
    "add", "ask", "back", "build", "cache", "call", "change", "chat", "check", "choose", "clean",
    "compare", "configure", "connect", "create", "debug", "delete", "deploy", "disable",
    "download", "edit", "enable", "evaluate", "export", "find", "fine-tune", "fix", "follow",
    "get", "import", "index", "install", "keep", "learn", "limit", "list", "make", "manage",
    "measure", "migrate", "monitor", "move", "observe", "open", "protect", "query", "read",
    "remove", "rename", "reset", "restore", "revoke", "rotate", "run", "save", "scale", "search",
    "secure", "send", "serve", "set", "share", "sign", "start", "stop", "stream", "switch", "test",
    "track", "train", "tune", "turn", "update", "upgrade", "upload", "use", "verify", "write",
})  # fmt: skip
_QUESTION_WORDS = frozenset({
    "how", "what", "why", "when", "which", "who", "where", "can", "does", "is", "are", "should",
})  # fmt: skip
# A heading that starts with one of these places its subject ("Inside the native engine"):
# it asks what is there, never names a task.
_PLACES = frozenset({"inside", "within", "behind", "beneath", "beyond", "under", "underneath"})
# A heading that starts with one of these qualifies its parent ("By e-mail"): no question alone.
_QUALIFIERS = frozenset({
    "about", "across", "after", "against", "along", "among", "and", "around", "as", "at",
    "before", "beside", "between", "by", "during", "for", "from", "in", "into", "of", "on", "or",
    "over", "past", "per", "since", "than", "through", "to", "toward", "towards", "until", "upon",
    "versus", "via", "vs", "with", "without",
})  # fmt: skip
# "Run them": a pronoun whose meaning is in the text before the heading.
_ELSEWHERE = frozenset({"them", "these", "those", "this", "one"})
_SUBJECT_SWAPS = ((r"\byour\b", "my"), (r"\byou\b", "I"), (r"\byours\b", "mine"))
MAX_WORDS = 8  # longer headings make clumsy questions
PER_DOCUMENT = 2
TRIES_PER_SUGGESTION = 6  # questions asked at most per one kept: bounds the work on big sets


@dataclass(frozen=True)
class Suggestion:
    question: str
    source: str
    section: str


def question_for(section: str) -> str | None:
    """A question for the heading path `section` ("chatworks > Deploy it"), or None when its
    last heading makes no good question (too long, dates and code, the document's title)."""
    path = section.split(" > ")
    if len(path) < 2:
        return None  # the document's title: too broad to answer from one passage
    heading = re.split(r":|,| — | - | \(", path[-1])[0].strip().rstrip("?.")  # no asides
    words = heading.split()
    if not 0 < len(words) <= MAX_WORDS or re.search(r"[\d`]", heading):
        return None
    first = words[0].lower()
    if first in _QUALIFIERS:
        return None
    if first in _QUESTION_WORDS:
        return f"{heading}?"
    if first in _PLACES:
        return f"What is {heading[0].lower()}{heading[1:]}?"
    for pattern, swapped in _SUBJECT_SWAPS:  # the reader asks: "your model" is "my model"
        heading = re.sub(pattern, swapped, heading)
    takes_object = len(words) > 1 and words[1].lower() in _OBJECT_STARTS
    if takes_object and len(words) == 2 and words[1].lower() in _ELSEWHERE:
        return None  # "Run them": what they are is in the text before
    if takes_object and first.endswith("ing"):  # "Serving the model": how do I serve it?
        if (verb := _infinitive(first)) is None:
            return None  # "Sharding the index": a verb not known, no clean question
        heading, first = verb + heading[len(first) :], verb
    plural = first.endswith("s") and not first.endswith("ss")  # "Settings a deployment needs"
    if first in _TASK_VERBS or (takes_object and not plural):
        task = re.sub(r"\bit\b", path[0], heading)  # "Deploy it" names the document's subject
        return f"How do I {first}{task[len(first) :]}?"
    noun = heading if heading[:2].isupper() else heading[0].lower() + heading[1:]  # not "OIDC"
    plural = words[-1].endswith("s") and not words[-1].endswith("ss")
    return f"What {'are' if plural else 'is'} {noun}?"


def _infinitive(gerund: str) -> str | None:
    """The task verb of a gerund ("serving" -> "serve", "running" -> "run"), if it is one."""
    stem = gerund[:-3]
    return next((v for v in (stem, stem + "e", stem[:-1]) if v in _TASK_VERBS), None)


def _order(section: Section) -> tuple[int, int]:
    question = question_for(section.section) or ""
    return (0 if question.startswith("How do I") else 1, section.source.count("/"))


def suggest(
    sections: Sequence[Section], answered_from: Callable[[str], Hit | None], count: int
) -> list[Suggestion]:
    """Up to `count` questions for `sections` (a collection's, in reading order).
    `answered_from(question)` is the passage a grounded answer would quote first, or None when
    the question would be refused; a question is kept when that passage is in its section."""
    kept: list[Suggestion] = []
    per_document: dict[str, int] = {}
    tries = TRIES_PER_SUGGESTION * count
    for section in sorted(sections, key=_order):  # stable: reading order within a rank
        question = question_for(section.section)
        if question is None or per_document.get(section.source, 0) >= PER_DOCUMENT:
            continue
        if tries == 0:
            break
        tries -= 1
        best = answered_from(question)
        if best is None or best.source != section.source:
            continue
        if not (best.chunk.section or "").startswith(section.section):
            continue  # answered, but from elsewhere: the chip would promise the wrong thing
        kept.append(Suggestion(question, section.source, section.section))
        per_document[section.source] = per_document.get(section.source, 0) + 1
        if len(kept) == count:
            break
    return kept
