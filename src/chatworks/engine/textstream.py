"""Token ids in, client-safe text out.

Two problems every streaming server has:
- a multi-byte character (emoji, CJK) may be split across tokens, so decoding token by token
  would emit a replacement character; we hold text back until it decodes cleanly;
- a stop string may be split across tokens, so text that could still become a stop string is
  held back until it either completes (generation stops, the stop string is not emitted) or
  diverges (the held text is released).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    """Decodes a growing list of token ids into text deltas that never end mid-character.

    Decoding a short window (from `_prefix` on) rather than all ids keeps each step cheap and
    keeps tokenizers that add a leading space from changing the text already sent.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str]):
        self._decode = decode
        self._ids: list[int] = []
        self._prefix = 0  # window start
        self._read = 0  # ids already turned into emitted text

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        window = self._ids[self._prefix :]
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(window)
        if len(after) <= len(before) or after.endswith(REPLACEMENT):
            return ""  # incomplete character (or nothing visible yet): wait for more ids
        self._prefix, self._read = self._read, len(self._ids)
        return after[len(before) :]


class StopMatcher:
    """Finds stop strings in streamed text, holding back any tail that could begin one."""

    def __init__(self, stops: Sequence[str]):
        self._stops = [s for s in stops if s]
        self._pending = ""
        self.stopped = False

    def push(self, text: str) -> str:
        """Returns the text that is safe to emit now; sets `stopped` when a stop string ends it."""
        if self.stopped:
            return ""
        self._pending += text
        hits = [i for i in (self._pending.find(s) for s in self._stops) if i >= 0]
        if hits:
            self.stopped = True
            out, self._pending = self._pending[: min(hits)], ""
            return out
        keep = self._longest_stop_prefix_suffix()
        cut = len(self._pending) - keep
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out

    def flush(self) -> str:
        """At the end of generation the held-back text was not a stop string after all."""
        out, self._pending = ("" if self.stopped else self._pending), ""
        return out

    def _longest_stop_prefix_suffix(self) -> int:
        best = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(self._pending)), best, -1):
                if self._pending.endswith(stop[:n]):
                    best = n
                    break
        return best
