"""Evidence: sentences with document offsets, focusing passages on the sentences that answer,
and the key spans attribution compares. Focus runs with the real local MiniLM embedder."""

from __future__ import annotations

import itertools

import pytest

from chatworks.rag.embed import LocalEmbedder
from chatworks.rag.evidence import focus, key_spans, sentences
from chatworks.rag.retrieve import Retrieved
from chatworks.rag.types import Chunk, Hit
from chatworks.settings import Settings

DOCUMENT = (
    "# Tea guide\n\nGreen tea is steeped at 80 degrees. It turns bitter in boiling water.\n\n"
    "Black tea takes boiling water\nfor four minutes. Milk is optional! Sugar too?"
)


def passage(text: str, start: int, cid: str = "c1") -> Retrieved:
    chunk = Chunk(id=cid, document_id="d", collection="c", ordinal=0, text=text, start=start,
                  end=start + len(text), section="Tea guide")  # fmt: skip
    return Retrieved(Hit(chunk, 1.0, title="Tea", source="tea.md"), 1.0)


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder.from_settings(Settings(_env_file=None))


def test_sentences_keep_document_offsets_and_join_wrapped_lines():
    offset = 100
    found = sentences(DOCUMENT, offset)
    assert [s.text for s in found] == [
        "# Tea guide", "Green tea is steeped at 80 degrees.", "It turns bitter in boiling water.",
        "Black tea takes boiling water\nfor four minutes.", "Milk is optional!", "Sugar too?",
    ]  # fmt: skip
    for s in found:
        assert DOCUMENT[s.start - offset : s.end - offset] == s.text


def test_focus_narrows_to_the_answering_window_with_exact_offsets(embedder):
    whole = passage(DOCUMENT, 100)
    [window] = focus("How long should black tea steep?", [whole], embedder, keep=1,
                     neighbours=0)  # fmt: skip
    chunk = window.hit.chunk
    assert chunk.text == "Black tea takes boiling water\nfor four minutes."
    assert DOCUMENT[chunk.start - 100 : chunk.end - 100] == chunk.text
    assert (chunk.id, chunk.section, window.hit.source) == ("c1", "Tea guide", "tea.md")


def test_focus_windows_grow_by_neighbours_and_never_overlap(embedder):
    windows = focus("green tea temperature", [passage(DOCUMENT, 0)], embedder, keep=3,
                    neighbours=1)  # fmt: skip
    assert "80 degrees" in windows[0].hit.chunk.text
    spans = sorted((w.hit.chunk.start, w.hit.chunk.end) for w in windows)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))
    assert windows[0].hit.chunk.text.count(".") >= 2  # the sentence and a neighbour


def test_key_spans_are_numbers_names_identifiers_and_quotes():
    spans = key_spans('Set CHATWORKS_DATABASE_URL to "postgresql" on port 8000, said Ada Lovelace.')
    assert {"chatworks_database_url", "postgresql", "8000", "ada", "lovelace"} <= spans
    assert "port" not in spans and "said" not in spans
