"""Structure-aware chunking with token-based size and overlap and exact character offsets.

A document is first cut at its structure (every heading and every page starts a new segment,
so a chunk has one section path and one page), then each segment is cut into windows of at
most `size` embedding-model tokens, preferring to end at a paragraph, then a line, then a
sentence, then a word boundary. Consecutive windows of a segment share about `overlap` tokens,
so a fact that straddles a cut is whole in at least one chunk. Offsets come from the
tokenizer's own offsets, so `doc.text[p.start:p.end] == p.text` always holds.
Not covered: semantic (embedding-similarity) chunking, table-aware chunking.
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import pairwise

from tokenizers import Tokenizer

from chatworks.rag.parse import Heading, ParsedDocument
from chatworks.rag.types import Passage


def chunk_document(
    doc: ParsedDocument, tokenizer: Tokenizer, size: int, overlap: int
) -> list[Passage]:
    """Cut `doc` into passages of at most `size` tokens (special tokens not counted)."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"need size >= 1 and 0 <= overlap < size, got {size=}, {overlap=}")
    text = doc.text
    cuts = sorted({0, len(text), *(h.start for h in doc.headings), *doc.page_starts})
    passages: list[Passage] = []
    for a, b in pairwise(cuts):
        encoding = tokenizer.encode(text[a:b], add_special_tokens=False)
        spans = [(a + s, a + e) for s, e in encoding.offsets if e > s]
        page = bisect_right(doc.page_starts, a) if doc.page_starts else None
        section = _section_at(doc.headings, a)
        for start, end in _windows(text, spans, size, overlap):
            passages.append(
                Passage(text=text[start:end], start=start, end=end, page=page, section=section)
            )
    return passages


def _section_at(headings: list[Heading], offset: int) -> str | None:
    """The heading path ("Guide > Install > From source") in force at `offset`."""
    stack: list[Heading] = []
    for heading in headings:
        if heading.start > offset:
            break
        while stack and stack[-1].level >= heading.level:
            stack.pop()
        stack.append(heading)
    return " > ".join(h.title for h in stack) or None


def _break_quality(text: str, spans: list[tuple[int, int]], i: int) -> int:
    """How good it is to end a chunk just before token i: paragraph 4, line 3, sentence 2,
    word 1, inside a word 0 (a WordPiece continuation has no gap before it)."""
    gap = text[spans[i - 1][1] : spans[i][0]]
    if "\n\n" in gap:
        return 4
    if "\n" in gap:
        return 3
    if gap and text[spans[i - 1][1] - 1] in ".!?:;":
        return 2
    return 1 if gap else 0


def _windows(
    text: str, spans: list[tuple[int, int]], size: int, overlap: int
) -> list[tuple[int, int]]:
    """Character ranges of the windows over one segment's token spans."""
    windows: list[tuple[int, int]] = []
    n, s = len(spans), 0
    while s < n:
        e = min(s + size, n)
        if e < n:
            # Best boundary in the second half of the window; the latest one among equals.
            best = max(
                range(s + size // 2 + 1, e + 1), key=lambda i: (_break_quality(text, spans, i), i)
            )
            e = best
        windows.append((spans[s][0], spans[e - 1][1]))
        if e == n:
            break
        # Step back `overlap` tokens, then forward to a word start, always making progress.
        s = max(e - overlap, s + 1)
        while s < e and _break_quality(text, spans, s) == 0:
            s += 1
    return windows
