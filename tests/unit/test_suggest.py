"""Suggested questions: made from a collection's headings, kept only when a grounded answer would
quote the section they came from."""

from __future__ import annotations

import pytest

from chatworks.rag.suggest import Suggestion, question_for, suggest
from chatworks.rag.types import Chunk, Hit
from chatworks.storage.documents import Section


@pytest.mark.parametrize(
    ("section", "question"),
    [
        ("chatworks > Deploy it", "How do I deploy chatworks?"),
        ("chatworks > Run it safely on a network: keys, scopes and limits",
         "How do I run chatworks safely on a network?"),
        ("Guide > Train your own model", "How do I train my own model?"),
        ("chatworks > The two commands", "What are the two commands?"),
        ("Security > Configuration", "What is configuration?"),
        ("Security > OIDC tokens", "What are OIDC tokens?"),
        ("FAQ > How do I reset a password", "How do I reset a password?"),
        ("Handbook > Request a badge", "How do I request a badge?"),  # a verb not on the list
        ("Architecture > Inside the native engine", "What is inside the native engine?"),
        ("Bench > Serving the default model (transformers provider)",
         "How do I serve the default model?"),
        ("Guide > Running your tests", "How do I run my tests?"),
        ("Operations > Logging", "What is logging?"),  # a gerund that is no task verb: a topic
        ("Design > Sharding the index", None),
        ("Bench > Training: the tiny preset", "What is training?"),
        ("Bench > Scaling sweep", "What is scaling sweep?"),
        ("Evals > Running them", None),
        ("Deploy > Settings a deployment needs", "What are settings a deployment needs?"),
        ("Handbook", None),  # a document's title: too broad
        ("Log > 2026-12-05 — a dated entry", None),
        ("Evals > Suites: `chatworks eval run`", "What are suites?"),
        ("FAQ > Reset a password > By e-mail", None),  # not a subject of its own
        ("Benchmarks > Through the HTTP API: concurrent streams", None),
        ("Guide > One heading that goes on for far too many words to ask", None),
    ],
)  # fmt: skip
def test_a_heading_becomes_a_question(section, question):
    assert question_for(section) == question


def hit(source: str, section: str) -> Hit:
    return Hit(Chunk("c", "d", "col", 0, "text", 0, 4, None, section), 1.0, "title", source)


SECTIONS = [
    Section("README.md", "Tool", "Tool > Install it"),
    Section("README.md", "Tool", "Tool > Configuration"),
    Section("README.md", "Tool", "Tool > Upgrade it"),
    Section("README.md", "Tool", "Tool > Deploy it"),
    Section("docs/faq.md", "FAQ", "FAQ > Reset a password"),
    Section("docs/faq.md", "FAQ", "FAQ > Reset a password > By e-mail"),
]


def test_kept_questions_are_answered_from_their_own_section():
    answers = {
        "How do I install Tool?": hit("README.md", "Tool > Install it > From source"),  # below
        "How do I upgrade Tool?": None,  # refused
        "How do I deploy Tool?": hit("docs/other.md", "Elsewhere"),  # answered from elsewhere
        "How do I reset a password?": hit("docs/faq.md", "FAQ > Reset a password"),
        "What is configuration?": hit("README.md", "Tool > Configuration"),
    }  # fmt: skip
    asked: list[str] = []

    def answered_from(question: str) -> Hit | None:
        asked.append(question)
        return answers.get(question)

    found = suggest(SECTIONS, answered_from, 3)
    assert found == [
        Suggestion("How do I install Tool?", "README.md", "Tool > Install it"),
        Suggestion("How do I reset a password?", "docs/faq.md", "FAQ > Reset a password"),
        Suggestion("What is configuration?", "README.md", "Tool > Configuration"),
    ]  # how-to questions first, root documents before deeper ones, in reading order
    assert asked[:3] == [
        "How do I install Tool?",
        "How do I upgrade Tool?",
        "How do I deploy Tool?",
    ]
    assert suggest(SECTIONS, lambda _: None, 3) == []
