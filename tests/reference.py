"""Comparing two computations of the same model without riding on one CPU's rounding.

Two correct paths (a batched KV-cache decode and a full forward pass, chatworks and
transformers, compiled and eager code) compute the same logits with other kernels, so they part
in the last bits, and on another CPU by other amounts. A tolerance read off one machine's output
holds there and fails on the next (issue 24: 0.05 held on AMD EPYC, Intel Xeon needed 0.125).
So every tolerance here follows from the precision, by one rule (`rounding_bound`), and texts
are never compared: each generated token is checked against the reference's logits for the same
prefix (teacher forcing) and must be within twice the bound of the reference's best logit. A
path that mixes up caches, positions or weights moves logits by whole units and fails; a
near-tie between two tokens does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

# The default model (SmolLM2-135M): 30 decoder blocks, and its longest dot products are the MLP's
# 1,536 inputs. Tests of other models pass their own.
DEFAULT_DEPTH, DEFAULT_TERMS = 30, 1536


def rounding_bound(
    dtype: torch.dtype,
    magnitude: float,
    depth: int = DEFAULT_DEPTH,
    terms: int = DEFAULT_TERMS,
) -> float:
    """How far two correct computations of one output of magnitude `magnitude` may part:
    eps(dtype) * sqrt(depth * terms) * magnitude.

    Each of `depth` layers may round each of its `terms`-long sums another way (other kernels add
    in another order; a one-ulp difference of a float32 input flips a bf16 rounding by one step):
    at most eps relative each. Roundings that do not conspire add like a random walk, so their
    total grows with the square root of their number, not linearly (Higham and Mary, "A new
    approach to probabilistic rounding error analysis", 2019). `magnitude` is the scale the
    outputs are measured in: the largest |logit| of a row, the largest |entry| of a tensor.
    Pass terms=1 when both paths run the same matmul kernels (only the code between them
    differs), so only one rounding step per layer can differ.
    """
    return torch.finfo(dtype).eps * math.sqrt(depth * terms) * magnitude


def within_rounding(
    got: torch.Tensor,
    expected: torch.Tensor,
    dtype: torch.dtype = torch.float32,
    depth: int = DEFAULT_DEPTH,
    terms: int = DEFAULT_TERMS,
) -> tuple[float, float]:
    """(largest difference, its bound): `expected`'s largest |entry| sets the magnitude."""
    difference = float((got.float() - expected.float()).abs().max())
    return difference, rounding_bound(dtype, float(expected.abs().max()), depth, terms)


def assert_within_rounding(got: torch.Tensor, expected: torch.Tensor, **bound) -> None:
    difference, limit = within_rounding(got, expected, **bound)
    assert difference <= limit, f"differ by {difference:.3g}, more than rounding ({limit:.3g})"


def assert_near_greedy(
    logits_of: Callable[[list[int]], torch.Tensor],
    prompt: Sequence[int],
    tokens: Sequence[int],
    dtype: torch.dtype = torch.float32,
) -> None:
    """`logits_of(ids)` gives the reference's next-token logits for every position of `ids`.

    Two paths whose logits differ by at most the rounding bound can pick tokens whose
    reference logits differ by at most twice it: that is the near-tie allowed."""
    ids = [*prompt, *tokens]
    with torch.inference_mode():
        logits = logits_of(ids)[len(prompt) - 1 : len(ids) - 1].float()
    for step, (row, token) in enumerate(zip(logits, tokens, strict=True)):
        gap = float(row.max() - row[token])
        allowed = 2 * rounding_bound(dtype, float(row.abs().max()))
        assert gap <= allowed, f"step {step}: token {token} is {gap:.4f} below the best logit"


def int_activation_bound(x: torch.Tensor, weight: torch.Tensor, group: int = 32) -> torch.Tensor:
    """How far an integer-dot product (engine/int4_kernel.py) of float rows x [rows, in] and
    weight [out, in] may part from the exact x @ weight.T, per output [rows, out].

    The kernel rounds x per group of `group` inputs to 16-bit fixed point, step
    s = max|x in the group| / (127 * 256), in two int8 halves (kernels/int4_mm.cpp): the high
    byte rounds to 256 s, the rest to s, and clamping that rest to 127 can cost one more half
    step, so each x_k moves by at most s, plus the float32 roundings of scaling x_k to steps
    (x_k times a rounded reciprocal, <= 3 eps |x_k|). An output moves by at most
    sum_k |w_k| (s(k) + 3 eps |x_k|). The integer sums are exact; the float32 arithmetic after
    them (per group a product and two fused multiply-adds into the running sum, n = 2 * groups
    + 1 roundings in a row) adds at most gamma_n * sum_k |w_k| |xq_k| with
    gamma_n = n eps / (1 - n eps) (Higham, "Accuracy and Stability of Numerical Algorithms",
    section 3.1), and |xq_k| <= |x_k| + s(k).
    """
    rows, k = x.shape
    eps = torch.finfo(torch.float32).eps
    top = x.double().view(rows, k // group, group).abs().amax(-1)
    step = (top / (127 * 256)).repeat_interleave(group, dim=-1)
    moved = step + 3 * eps * x.double().abs()
    w = weight.double().abs()
    n = 2 * (k // group) + 1
    return moved @ w.T + n * eps / (1 - n * eps) * ((x.double().abs() + moved) @ w.T)
