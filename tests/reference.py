"""Comparing a generation path with a reference model without riding on one CPU's rounding.

Two paths that run different kernels (a batched KV-cache decode and a full forward pass,
chatworks and transformers) agree to ~1e-5 on the logits, but when two tokens are that close
their argmax can flip on another CPU and the texts part ways. So instead of comparing texts,
each generated token is checked against the reference's logits for the same prefix (teacher
forcing): it must be within `tolerance` of the reference's best logit. A path that mixes up
caches, positions or weights picks tokens far below the best and fails; a near-tie does not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

# Logits of the default model span ~20 units; the paths here differ by ~1e-4 at most.
LOGIT_TOLERANCE = 1e-2


def assert_near_greedy(
    logits_of: Callable[[list[int]], torch.Tensor],
    prompt: Sequence[int],
    tokens: Sequence[int],
    tolerance: float = LOGIT_TOLERANCE,
) -> None:
    """`logits_of(ids)` gives the reference's next-token logits for every position of `ids`."""
    ids = [*prompt, *tokens]
    with torch.inference_mode():
        logits = logits_of(ids)[len(prompt) - 1 : len(ids) - 1].float()
    for step, (row, token) in enumerate(zip(logits, tokens, strict=True)):
        gap = float(row.max() - row[token])
        assert gap <= tolerance, f"step {step}: token {token} is {gap:.4f} below the best logit"
