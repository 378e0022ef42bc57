"""Per-slot key/value cache for the scheduler.

One tensor pair per layer, [slots, n_kv_heads, capacity, head_dim]. The scheduler keeps its
running sequences in slots 0..n-1 (it moves the last one into any slot that frees up), so a
decode step reads a plain slice of the cache rather than gathering rows. Capacity starts small
and doubles on demand up to `max_len`, so memory follows the longest sequence served so far
(it never shrinks) rather than the model's context length. Does not cover: paging or prefix
sharing.
"""

from __future__ import annotations

import torch

from chatworks.model.config import ModelConfig
from chatworks.model.llama import KVCacheViews


class KVCache:
    def __init__(
        self, cfg: ModelConfig, slots: int, dtype: torch.dtype, max_len: int, initial: int = 256
    ):
        self.cfg, self.slots, self.dtype, self.max_len = cfg, slots, dtype, max_len
        self.capacity = 0
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.reserve(min(initial, max_len))

    def _empty(self, capacity: int) -> torch.Tensor:
        shape = (self.slots, self.cfg.n_kv_heads, capacity, self.cfg.head_dim)
        return torch.zeros(shape, dtype=self.dtype)

    def reserve(self, length: int) -> None:
        """Make room for `length` positions in every slot, keeping what is there."""
        if length <= self.capacity:
            return
        if length > self.max_len:
            raise ValueError(f"{length} positions exceed the cache limit of {self.max_len}")
        capacity = min(max(length, 2 * self.capacity), self.max_len)
        for tensors in (self.keys, self.values):
            grown = [self._empty(capacity) for _ in range(self.cfg.n_layers)]
            for new, old in zip(grown, tensors, strict=False):
                new[:, :, : self.capacity] = old
            tensors[:] = grown
        self.capacity = capacity

    def views(self, start: int, stop: int) -> KVCacheViews:
        """The cache of slots start..stop-1, as the model's forward takes it (no copy)."""
        return [(k[start:stop], v[start:stop]) for k, v in zip(self.keys, self.values, strict=True)]

    def move(self, src: int, dst: int, length: int) -> None:
        """Copy the first `length` positions of slot `src` into slot `dst`."""
        for tensor in (*self.keys, *self.values):
            tensor[dst, :, :length] = tensor[src, :, :length]
