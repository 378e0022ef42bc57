"""UTF-8-safe detokenizing and stop strings split across tokens."""

from __future__ import annotations

from chatworks.engine.textstream import IncrementalDetokenizer, StopMatcher


def byte_decode(ids) -> str:
    """A real byte-level tokenizer: every token is one byte, so characters split naturally."""
    return bytes(ids).decode("utf-8", errors="replace")


def stream_bytes(text: str) -> list[str]:
    detok = IncrementalDetokenizer(byte_decode)
    return [detok.push(b) for b in text.encode()]


def test_multibyte_characters_are_never_split():
    text = "héllo 👋🏽 世界!"
    pieces = stream_bytes(text)
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    # The 4-byte emoji arrives as one piece after three empty ones.
    emoji = pieces[text.encode().index("👋".encode()) :][:4]
    assert emoji == ["", "", "", "👋"]


def test_genuine_replacement_characters_from_bad_bytes_are_held_then_released():
    detok = IncrementalDetokenizer(byte_decode)
    out = [detok.push(b) for b in b"a\xff"]  # an invalid byte decodes to U+FFFD
    out += [detok.push(b) for b in b"bc"]
    assert "".join(out) == "a\ufffdbc"


def test_stop_string_split_across_pushes_is_cut_and_not_emitted():
    stops = StopMatcher(["###"])
    emitted = [stops.push(t) for t in ["Hello #", "#", "# world"]]
    assert "".join(emitted) == "Hello "
    assert stops.stopped
    assert stops.push("more") == ""


def test_partial_stop_prefix_is_released_when_it_diverges():
    stops = StopMatcher(["STOP"])
    assert stops.push("go ST") == "go "
    assert stops.push("ART") == "START"
    assert not stops.stopped


def test_flush_releases_held_back_text_at_the_end():
    stops = StopMatcher(["</s>"])
    assert stops.push("answer </") == "answer "
    assert stops.flush() == "</"


def test_earliest_of_several_stops_wins():
    stops = StopMatcher(["world", "lo"])
    assert stops.push("hello world") == "hel"
    assert stops.stopped


def test_no_stops_passes_everything_through():
    stops = StopMatcher([])
    assert stops.push("abc") == "abc" and stops.flush() == ""
