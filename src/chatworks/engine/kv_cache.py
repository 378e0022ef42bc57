"""Per-slot key/value cache for the scheduler, sized by what its sequences need.

One tensor pair per layer, [rows, n_kv_heads, capacity, head_dim]. The scheduler keeps its
sequences packed in slots 0..n-1 (it moves the last one into any slot that frees up), so a
forward pass reads a plain slice of the cache rather than gathering rows. Rows and capacity
grow on demand (doubling where the budget allows, so reallocations are rare) and a reallocation
drops what no sequence uses, so memory follows the sequences being served, within
`budget_bytes`. `export`/`load` copy a sequence's positions out and in, for the prefix cache.
Does not cover: paging (every row is as long as the longest sequence).
"""

from __future__ import annotations

import torch

from chatworks.model.config import ModelConfig
from chatworks.model.llama import KVCacheViews


class KVCache:
    def __init__(
        self,
        cfg: ModelConfig,
        slots: int,
        dtype: torch.dtype,
        max_len: int,
        budget_bytes: float = float("inf"),
    ):
        self.cfg, self.slots, self.dtype, self.max_len = cfg, slots, dtype, max_len
        self.budget_positions = budget_bytes / self.bytes_per_position
        self.rows = self.capacity = 0  # nothing allocated until the first sequence arrives
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    @property
    def bytes_per_position(self) -> int:
        """Keys and values of one position of one sequence, all layers."""
        cfg = self.cfg
        return 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * self.dtype.itemsize

    @staticmethod
    def allocated(rows: int, length: int) -> int:
        """Positions held for `rows` sequences of `length`: each row has a spare one (`_empty`)."""
        return rows * (length + 1)

    @property
    def nbytes(self) -> int:
        return self.allocated(self.rows, self.capacity) * self.bytes_per_position

    def fits(self, rows: int, length: int) -> bool:
        """Whether `rows` sequences of up to `length` positions fit in the budget."""
        return (
            rows <= self.slots
            and length <= self.max_len
            and self.allocated(rows, length) <= self.budget_positions
        )

    def reserve(self, rows: int, length: int) -> None:
        """Make room for slots 0..rows-1 of `length` positions, `length` covering every sequence
        in them: a reallocation keeps their first `length` positions and drops the rest."""
        if rows <= self.rows and length <= self.capacity:
            return
        if not self.fits(rows, length):
            raise ValueError(f"{rows} sequences of {length} positions exceed the KV cache budget")
        kept = (max(rows, self.rows), max(length, self.capacity))
        roomy = (min(max(kept[0], 2 * self.rows), self.slots),
                 min(max(kept[1], 2 * self.capacity), self.max_len))  # fmt: skip
        new_rows, capacity = next(
            size for size in (roomy, kept, (rows, length)) if self.fits(*size)
        )
        copy_rows, copy_len = min(self.rows, new_rows), min(self.capacity, capacity)
        for tensors in (self.keys, self.values):
            fresh = [self._empty(new_rows, capacity) for _ in range(self.cfg.n_layers)]
            for new, old in zip(fresh, tensors, strict=False):
                new[:copy_rows, :, :copy_len] = old[:copy_rows, :, :copy_len]
            tensors[:] = fresh
        self.rows, self.capacity = new_rows, capacity

    def _empty(self, rows: int, capacity: int) -> torch.Tensor:
        # One position more than the capacity, never read: a forward then never reads a whole
        # row, and a compiled model (`engine/compiled.py`) needs no second graph for that case.
        return torch.zeros(
            (rows, self.cfg.n_kv_heads, capacity + 1, self.cfg.head_dim), dtype=self.dtype
        )

    def views(self, start: int, stop: int) -> KVCacheViews:
        """The cache of slots start..stop-1, as the model's forward takes it (no copy)."""
        return [(k[start:stop], v[start:stop]) for k, v in zip(self.keys, self.values, strict=True)]

    def move(self, src: int, dst: int, length: int) -> None:
        """Copy the first `length` positions of slot `src` into slot `dst`."""
        for tensor in (*self.keys, *self.values):
            tensor[dst, :, :length] = tensor[src, :, :length]

    def swap(self, a: int, b: int, length: int) -> None:
        """Exchange the first `length` positions of slots `a` and `b`."""
        for tensor in (*self.keys, *self.values):
            held = tensor[a, :, :length].clone()
            tensor[a, :, :length] = tensor[b, :, :length]
            tensor[b, :, :length] = held

    def export(self, slot: int, length: int) -> torch.Tensor:
        """A copy of the first `length` positions of `slot`: [layers, 2, kv_heads, length, dim]."""
        return torch.stack([torch.stack((k[slot, :, :length], v[slot, :, :length]))
                            for k, v in zip(self.keys, self.values, strict=True)])  # fmt: skip

    def load(self, slot: int, kv: torch.Tensor, length: int) -> None:
        """Write the first `length` positions of an `export`ed tensor into `slot`."""
        for layer, (k, v) in enumerate(zip(self.keys, self.values, strict=True)):
            k[slot, :, :length] = kv[layer, 0, :, :length]
            v[slot, :, :length] = kv[layer, 1, :, :length]
