"""Serving precision: fp32, bf16, or weight-only int8 / int4.

Decoding one token reads every weight once, so on a CPU its speed is set by bytes of weights per
token (memory bandwidth), not by arithmetic: bf16 halves the bytes, int8 quarters them, int4
(groups of 32 with a scale and a minimum each, the layout of GGUF's Q4_1, whose codes are loaded
as the file stores them) cuts them ~7x for decode batches of up to 4 rows; larger batches and
prefill use a dense copy of the same quantized weights (compute-bound there; bf16 where the CPU
has native bf16 matmuls, else float32), so resident memory is ~2.5 bytes per weight in int4 and
~3 in int8 (~4.5 and ~5 with float32 copies). The int kernels take bf16 activations.
RoPE tables and norm statistics stay float32 in every mode.
Does not cover: quantization-aware training or activation quantization.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from chatworks.model import Tokenizer, load_pretrained, read_int4_weights
from chatworks.model.gguf_io import Int4Groups
from chatworks.model.llama import Llama

Precision = Literal["fp32", "bf16", "int8", "int4"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


# The dense copies' dtype: bfloat16 where oneDNN has native bf16 matmuls (AVX-512 BF16, AMX),
# float32 elsewhere, where a bf16 matmul is emulated: on AVX2 kernels a 230-token prefill took
# 2,845 ms with bf16 copies and 816 ms with float32 ones (docs/benchmarks.md, "The same kernels
# on another CPU").
DENSE_DTYPE = torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32


class _PackedLinear(nn.Module):
    """A weight-only quantized linear: the packed kernel for a few rows (decoding 1-4
    sequences), a dense copy of the same quantized weights for more. The packed kernels
    re-unpack the weights for every input row, so they only win while rows are few: for more
    (prefill, big batches) the dense matrix is faster: `bench/kernels.py` times both by rows
    (int4, 576x1536: 230 rows 4.9 ms vs 1.9 ms; int8 output head, 49152x576: 16 rows 24.6 ms
    vs 12.0 ms)."""

    MAX_PACKED_ROWS = 4

    def packed(self, flat: torch.Tensor) -> torch.Tensor:
        """The packed kernel's product for bf16 rows `flat` [rows, in]."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        if flat.shape[0] <= self.MAX_PACKED_ROWS:
            out = self.packed(flat.to(torch.bfloat16))
        else:
            out = F.linear(flat.to(self.dense.dtype), self.dense)
        return out.view(*x.shape[:-1], -1).to(x.dtype)


class Int8Linear(_PackedLinear):
    """y = x @ (q * scale)^T with q int8 and one symmetric scale per output channel."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127
        q = torch.round(w / scale[:, None])
        self.register_buffer("weight", q.to(torch.int8))
        # The CPU kernel is ~2x faster with bf16 activations than float32 ones (measured here).
        self.register_buffer("scale", scale.to(torch.bfloat16))
        self.register_buffer("dense", (q * self.scale.float()[:, None]).to(DENSE_DTYPE))

    def packed(self, flat: torch.Tensor) -> torch.Tensor:
        return torch._weight_int8pack_mm(flat, self.weight, self.scale)


class Int4Linear(_PackedLinear):
    """Asymmetric 4-bit weights per group of `GROUP` inputs: w = q * scale + min, q in 0..15."""

    GROUP = 32

    def __init__(self, groups: Int4Groups):
        super().__init__()
        n, k = groups.codes.shape
        q = groups.codes.view(n, k // self.GROUP, self.GROUP).float()
        scale, low = groups.scale.float(), groups.minimum.float()
        self.register_buffer(
            "weight", torch._convert_weight_to_int4pack_for_cpu(groups.codes.to(torch.int32), 1)
        )
        # The kernel computes (q - 8) * scale + zero, so zero = min + 8 * scale; [k/GROUP, n, 2].
        # Only bfloat16 scales are fast (float16 and float32 ones are ~40x slower here), so this
        # rounding is the one place the int4 path departs from the file's Q4 weights.
        pairs = torch.stack([scale, low + 8 * scale], dim=-1).transpose(0, 1)
        self.register_buffer("scales_and_zeros", pairs.contiguous().to(torch.bfloat16))
        dense = (q * scale[..., None] + low[..., None]).view(n, k)
        self.register_buffer("dense", dense.to(DENSE_DTYPE))

    @classmethod
    def quantize(cls, linear: nn.Linear) -> Int4Linear:
        """Round a float weight to 4 bits: each group's own minimum and range."""
        w = linear.weight.detach().float()
        n, k = w.shape
        groups = w.view(n, k // cls.GROUP, cls.GROUP)
        low, high = groups.amin(-1), groups.amax(-1)
        scale = ((high - low) / 15).clamp(min=1e-12)
        q = torch.round((groups - low[..., None]) / scale[..., None]).clamp(0, 15)
        return cls(Int4Groups(q.view(n, k).to(torch.uint8), scale, low))

    def packed(self, flat: torch.Tensor) -> torch.Tensor:
        return torch._weight_int4pack_mm_for_cpu(
            flat, self.weight, self.GROUP, self.scales_and_zeros
        )


def apply_precision(
    model: Llama, precision: str, file_int4: Mapping[str, Int4Groups] | None = None
) -> Llama:
    """Convert `model` (float32, as loaded) in place. For int4, `file_int4` (from
    `gguf_io.read_int4_groups`) gives layers the 4-bit weights their file stores, instead of
    rounding the float32 copy again: a Q4_1 file's groups are kept as they are, and a Q4_0 file's
    (symmetric, so rarely spanning all 16 codes) are not re-rounded onto a different grid."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "bf16":
        cos, sin = model.rope_cos, model.rope_sin
        model.to(torch.bfloat16)
        model.rope_cos, model.rope_sin = cos, sin
    elif precision in ("int8", "int4"):
        # Every projection, and the output head (its own copy when tied: the embedding lookup
        # reads one row per token, so it stays float). The head stays int8 even in int4 mode:
        # logits are the most sensitive to it (GGUF files keep it at Q8_0 or better for the same
        # reason), and with an int4 head the default model's greedy answers went wrong
        # ("the capital of France is L'Etoile"), while int8 kept them (measured, 6 prompts).
        for name, module in list(model.named_modules()):
            if isinstance(module, nn.Linear):
                fits_int4 = module.in_features % Int4Linear.GROUP == 0 and name != "lm_head"
                if precision == "int4" and fits_int4:
                    stored = (file_int4 or {}).get(name)
                    quantized = Int4Linear(stored) if stored else Int4Linear.quantize(module)
                else:
                    quantized = Int8Linear(module)
                parent, _, attr = name.rpartition(".")
                setattr(model.get_submodule(parent), attr, quantized)
    return model


def load_for_serving(path: str | Path | None, precision: str) -> tuple[Llama, Tokenizer]:
    """A model as the engine serves it: loaded (default: the bundled one), then converted to
    `precision`, an int4 GGUF model with the 4-bit weights its file stores."""
    model, tokenizer = load_pretrained(path)
    file_int4 = read_int4_weights(path) if precision == "int4" else {}
    return apply_precision(model, precision, file_int4), tokenizer
