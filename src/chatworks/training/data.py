"""Batches for pretraining, read from the token shards `corpus.py` writes.

One split's shards are one long token stream (documents separated by BOS), cut into windows of
`seq_len + 1` tokens (inputs and next-token targets). Training visits the windows in a seeded
random order: corpora are stored in file order, and consecutive windows of one manual are far
more alike than the validation set is. The whole position of the loader is one integer,
`cursor` (windows consumed), so a checkpoint that stores it resumes on exactly the next tokens.
With several processes, each takes its own rows of the global batch, so N processes see exactly
the tokens one process would. After the last window a new epoch starts in the same order.

Does not cover: BOS-aligned packing (windows may start mid-document, as GPT-2's did): the
default corpus is long manuals (218 documents, median 2.3k tokens, in the tiny preset), and
cropping each at its row, as nanochat does for short web pages, would keep 5% of its tokens.
Nor SFT batches (`sft.py`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from chatworks.training.corpus import Manifest


class TokenStream:
    def __init__(self, data_dir: str | Path, split: str, shuffle_seed: int | None = None):
        data_dir = Path(data_dir)
        manifest = Manifest.load(data_dir / "manifest.json")
        if not manifest.complete:
            raise ValueError(f"{data_dir}: corpus preparation has not finished; run it again")
        shards = [
            np.memmap(data_dir / str(s["file"]), dtype=manifest.dtype, mode="r")
            for s in manifest.shards[split]
        ]
        if not shards:
            raise ValueError(f"{data_dir}: no {split} tokens")
        # One array keeps slicing trivial, at the cost of a copy of the split in RAM per process:
        # fine for the CPU presets, too much for the GPU presets' full corpora (left for then).
        self.tokens = np.concatenate(shards) if len(shards) > 1 else shards[0]
        self.shuffle_seed = shuffle_seed
        self._orders: dict[int, np.ndarray] = {}  # seq_len -> window order

    def __len__(self) -> int:
        return len(self.tokens)

    def window(self, start: int, length: int) -> np.ndarray:
        """`length` tokens from `start`, wrapping around the end of the stream."""
        idx = (start + np.arange(length)) % len(self.tokens)
        return self.tokens[idx]

    def window_start(self, k: int, seq_len: int) -> int:
        """Where the k-th window of an epoch-spanning walk starts."""
        n_windows = max(1, len(self.tokens) // seq_len)
        if self.shuffle_seed is None:
            return k * seq_len
        if seq_len not in self._orders:
            rng = np.random.default_rng(self.shuffle_seed)
            self._orders[seq_len] = rng.permutation(n_windows)
        return int(self._orders[seq_len][k % n_windows]) * seq_len

    def batch(
        self, cursor: int, rows: int, seq_len: int, rank: int = 0, world_size: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """This process's (inputs, targets) [rows, seq_len] and the cursor after the global batch.

        The global batch is windows `cursor ... cursor + rows * world_size - 1`; process `rank`
        takes `rows` of them, starting at `cursor + rank * rows`.
        """
        first = cursor + rank * rows
        chunk = np.stack(
            [self.window(self.window_start(first + r, seq_len), seq_len + 1) for r in range(rows)]
        ).astype(np.int64)
        x = torch.from_numpy(chunk)
        return x[:, :-1], x[:, 1:], cursor + rows * world_size
