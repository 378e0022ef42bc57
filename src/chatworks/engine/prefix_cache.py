"""Prefix cache: keys and values of finished sequences, reused by prompts that start the same way.

A chat's second turn is its first turn's prompt and answer plus a new message; a RAG question
repeats the context of the one before; every chat request starts with the same template and
system prompt. The scheduler asks `longest` for the stored sequence sharing the longest token
prefix with a new prompt (it also checks the sequences still in its own cache), copies those
positions into the new sequence's slot and prefills only the rest.

Entries are whole sequences (token ids and their keys/values for every layer, copied out of the
cache when a sequence finishes), kept least-recently-used first within a byte budget. A new
entry replaces the entries it extends (a conversation's earlier turns). Lookup compares token
tensors, so it costs microseconds per entry, not a Python loop over tokens.
Does not cover: sharing memory between entries and running sequences (each holds its own copy;
a copy of 1,000 positions of the default model is ~46 MB and takes milliseconds, its prefill
seconds).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch


def common_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many leading token ids two 1-d tensors share."""
    n = min(len(a), len(b))
    differ = (a[:n] != b[:n]).nonzero()
    return int(differ[0]) if len(differ) else n


@dataclass(frozen=True)
class Entry:
    tokens: torch.Tensor  # [L] int64
    kv: torch.Tensor  # [layers, 2, kv_heads, L, head_dim]: keys then values of each layer

    @property
    def nbytes(self) -> int:
        return self.kv.numel() * self.kv.element_size()


class PrefixCache:
    def __init__(self, budget_bytes: int, min_tokens: int = 8):
        self.budget, self.min_tokens = budget_bytes, min_tokens
        self._entries: OrderedDict[int, Entry] = OrderedDict()  # oldest use first
        self._ids = itertools.count()
        self.nbytes = 0

    def longest(self, prompt: torch.Tensor) -> tuple[int, Entry | None]:
        """The entry sharing the most leading tokens with `prompt`, and how many (marked as
        just used). (0, None) when none shares `min_tokens`."""
        best, found = 0, None
        for key, entry in self._entries.items():
            if (n := common_prefix(entry.tokens, prompt)) > best:
                best, found = n, key
        if found is None or best < self.min_tokens:
            return 0, None
        self._entries.move_to_end(found)
        return best, self._entries[found]

    def add(self, tokens: list[int], nbytes: int, kv: Callable[[], torch.Tensor]) -> None:
        """Keep a finished sequence of `nbytes` of keys and values (`kv()` copies them, only
        called when they are kept), dropping the entries it extends, then the least recently
        used over budget. A sequence too short, larger than the whole budget, or already covered
        by a longer entry is not kept."""
        if len(tokens) < self.min_tokens or nbytes > self.budget:
            return
        ids = torch.tensor(tokens, dtype=torch.long)
        for key, old in list(self._entries.items()):
            shared = common_prefix(old.tokens, ids)
            if shared == len(ids):
                return
            if shared == len(old.tokens):
                self._drop(key)
        entry = Entry(ids, kv())
        self._entries[next(self._ids)] = entry
        self.nbytes += entry.nbytes
        while self.nbytes > self.budget:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: int) -> None:
        self.nbytes -= self._entries.pop(key).nbytes
