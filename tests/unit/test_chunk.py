"""Chunking with the real MiniLM tokenizer: sizes in its tokens, exact offsets, structure."""

from __future__ import annotations

from itertools import pairwise

import pytest
from tokenizers import Tokenizer

from chatworks.rag.chunk import chunk_document
from chatworks.rag.embed import embedding_model_path, load_tokenizer
from chatworks.rag.parse import Heading, ParsedDocument, parse_bytes
from chatworks.settings import Settings


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return load_tokenizer(embedding_model_path(Settings()))


def n_tokens(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


LONG = "\n\n".join(
    f"Paragraph {i} talks about caf\u00e9s, na\u00efve r\u00e9sum\u00e9s and tokenization. "
    "It has a second sentence! And a third one?"
    for i in range(40)
)


def test_offsets_are_exact_and_sizes_bounded(tokenizer: Tokenizer) -> None:
    doc = ParsedDocument(text=LONG, title="t")
    passages = chunk_document(doc, tokenizer, size=48, overlap=8)
    assert len(passages) > 10
    for p in passages:
        assert doc.text[p.start : p.end] == p.text
        assert n_tokens(tokenizer, p.text) <= 48
        assert p.text == p.text.strip()
    # Everything is covered: no text between consecutive chunks is lost.
    for a, b in pairwise(passages):
        assert b.start <= a.end or not doc.text[a.end : b.start].strip()
    assert passages[0].start == 0 and passages[-1].end == len(doc.text)


def test_windows_overlap_and_prefer_paragraph_breaks(tokenizer: Tokenizer) -> None:
    doc = ParsedDocument(text=LONG, title="t")
    passages = chunk_document(doc, tokenizer, size=60, overlap=10)
    overlaps = [a.end - b.start for a, b in pairwise(passages)]
    assert all(o > 0 for o in overlaps)
    # Most chunks end where a paragraph or sentence ends, not mid-sentence.
    ends = [p.text[-1] for p in passages[:-1]]
    assert sum(e in ".!?" for e in ends) >= len(ends) - 1


def test_no_overlap_tiles_the_text(tokenizer: Tokenizer) -> None:
    doc = ParsedDocument(text=LONG, title="t")
    passages = chunk_document(doc, tokenizer, size=50, overlap=0)
    for a, b in pairwise(passages):
        assert a.end <= b.start and not doc.text[a.end : b.start].strip()


def test_headings_start_chunks_and_give_section_paths(tokenizer: Tokenizer) -> None:
    md = (
        "# Guide\n\nIntro.\n\n## Install\n\nSteps here.\n\n"
        "### From source\n\nBuild it.\n\n## Use\n\nRun."
    )
    doc = parse_bytes(md.encode(), "g.md")
    passages = chunk_document(doc, tokenizer, size=200, overlap=20)
    assert [(p.section, p.text) for p in passages] == [
        ("Guide", "# Guide\n\nIntro."),
        ("Guide > Install", "## Install\n\nSteps here."),
        ("Guide > Install > From source", "### From source\n\nBuild it."),
        ("Guide > Use", "## Use\n\nRun."),
    ]


def test_pages_split_chunks_and_are_numbered_from_one(tokenizer: Tokenizer) -> None:
    text = "Page one text.\n\nPage two text.\n\nPage three."
    doc = ParsedDocument(text=text, title="p", page_starts=[0, 16, 32])
    passages = chunk_document(doc, tokenizer, size=200, overlap=0)
    assert [(p.page, p.text) for p in passages] == [
        (1, "Page one text."),
        (2, "Page two text."),
        (3, "Page three."),
    ]


def test_text_before_first_heading_has_no_section(tokenizer: Tokenizer) -> None:
    doc = ParsedDocument(
        text="Preface.\n\nChapter\n\nBody.",
        title="x",
        headings=[Heading(start=10, level=1, title="Chapter")],
    )
    passages = chunk_document(doc, tokenizer, size=100, overlap=0)
    assert [(p.section, p.text) for p in passages] == [
        (None, "Preface."),
        ("Chapter", "Chapter\n\nBody."),
    ]


def test_one_long_word_is_still_cut(tokenizer: Tokenizer) -> None:
    doc = ParsedDocument(text="x" * 3000, title="x")
    passages = chunk_document(doc, tokenizer, size=32, overlap=4)
    assert all(n_tokens(tokenizer, p.text) <= 32 for p in passages)
    assert passages[-1].end == 3000


def test_invalid_sizes_are_rejected(tokenizer: Tokenizer) -> None:
    with pytest.raises(ValueError):
        chunk_document(ParsedDocument(text="a", title="a"), tokenizer, size=10, overlap=10)
