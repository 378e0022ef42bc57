"""Serving precision: fp32, bf16, or weight-only int8 / int4.

Decoding one token reads every weight once, so on a CPU its speed is set by bytes of weights per
token (memory bandwidth), not by arithmetic: bf16 halves the bytes, int8 (groups of 32 with a
scale each, GGUF's Q8_0) cuts them ~3x and int4 (groups of 32 with a scale and a minimum each,
GGUF's Q4_1) ~6x for decode batches of up to 4 rows; a GGUF file's own codes are loaded as it
stores them. Those decode rows go through the integer-dot kernel (`int4_kernel`: activations
rounded to int8 per block of 32, the codes multiplied as integers) where it builds, else through
torch's int4 kernel, which takes bf16 activations. Larger batches and prefill use a dense copy
of the same quantized weights (compute-bound there; bf16 where the CPU has native bf16 matmuls,
else float32), so resident memory is ~2.6 bytes per weight in int4 and ~3.3 in int8 (~4.6 and
~5.3 with float32 copies). RoPE tables and norm statistics stay float32 in every mode.
Does not cover: quantization-aware training.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from chatworks.engine import int4_kernel
from chatworks.model import Tokenizer, load_pretrained, read_quantized_weights
from chatworks.model.gguf_io import QuantGroups
from chatworks.model.llama import Llama

Precision = Literal["fp32", "bf16", "int8", "int4"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


# The dense copies' dtype: bfloat16 where oneDNN has native bf16 matmuls (AVX-512 BF16, AMX),
# float32 elsewhere, where a bf16 matmul is emulated: on AVX2 kernels a 230-token prefill took
# 2,845 ms with bf16 copies and 816 ms with float32 ones (docs/benchmarks.md, "The same kernels
# on another CPU").
DENSE_DTYPE = torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32


class _PackedLinear(nn.Module):
    """A weight-only quantized linear over groups of `GROUP` inputs, w = code * scale + minimum
    per group: a packed int4 kernel for a few rows (decoding 1-4 sequences), a dense copy of the
    same quantized weights for more. The kernels re-unpack the weights for every input row, so
    they only win while rows are few: for more (prefill, big batches) the dense matrix is
    faster: `bench/kernels.py` times both by rows (int4, 576x1536: 230 rows 4.9 ms vs 1.9 ms)."""

    GROUP = 32
    MAX_PACKED_ROWS = 4

    def __init__(self, codes: torch.Tensor, scale: torch.Tensor, minimum: torch.Tensor,
                 dense: torch.Tensor, integer_kernel: bool | None = None):  # fmt: skip
        """codes: 0..15 [out, packed inputs]; scale, minimum: [out, packed inputs / GROUP];
        dense: the weight the packed product equals, [out, in]. `integer_kernel`: decode rows
        on `int4_kernel` (default: where it builds) or on torch's int4 kernel."""
        super().__init__()
        self.register_buffer("dense", dense.to(DENSE_DTYPE))
        if integer_kernel is None:
            integer_kernel = int4_kernel.available()
        elif integer_kernel and not int4_kernel.available():
            raise RuntimeError(f"no integer-dot kernel: {int4_kernel.unavailable_reason()}")
        self.integer_kernel = integer_kernel
        if integer_kernel:  # its float16 scales and minimums hold a GGUF file's exactly
            self.register_buffer("tiles", int4_kernel.pack(codes, scale, minimum))
            self.isa = int4_kernel.isa()  # a constant to torch.compile, which cannot call isa()
            return
        self.register_buffer(
            "weight", torch._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32), 1)
        )
        # The kernel computes (code - 8) * scale + zero, so zero = minimum + 8 * scale, laid out
        # [inputs / GROUP, out, 2]. Only bfloat16 scales are fast (float16 and float32 ones are
        # ~40x slower here), so this rounding is the one place the packed path departs from a
        # file's stored weights.
        pairs = torch.stack([scale, minimum + 8 * scale], dim=-1).transpose(0, 1)
        self.register_buffer("scales_and_zeros", pairs.contiguous().to(torch.bfloat16))

    @classmethod
    def fits(cls, linear: nn.Linear) -> bool:
        """Whether the kernel takes its shape: whole groups of inputs, outputs in 16s."""
        return linear.in_features % cls.GROUP == 0 and linear.out_features % 16 == 0

    def packed(self, flat: torch.Tensor) -> torch.Tensor:
        """The packed kernel's product for rows `flat` [rows, in]."""
        if self.integer_kernel:
            return int4_kernel.int4_mm(flat.float(), self.tiles, self.isa)
        return torch._weight_int4pack_mm_for_cpu(
            flat.to(torch.bfloat16), self.weight, self.GROUP, self.scales_and_zeros
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        if flat.shape[0] <= self.MAX_PACKED_ROWS:
            out = self.packed(flat)
        else:
            out = F.linear(flat.to(self.dense.dtype), self.dense)
        return out.view(*x.shape[:-1], -1).to(x.dtype)

    @staticmethod
    def joinable(parts: list[nn.Module]) -> bool:
        """Whether `side_by_side` takes `parts`: packed linears of one kind, all on the
        integer-dot kernel (torch's int4 kernel packs weights its own way)."""
        return len({type(part) for part in parts}) == 1 and all(
            isinstance(part, _PackedLinear) and part.integer_kernel for part in parts
        )

    @classmethod
    def side_by_side(cls, parts: list[_PackedLinear]) -> _PackedLinear:
        """One linear whose outputs are `parts`' outputs in order (linears with one input), on
        the integer-dot kernel: its tiles of 16 output rows are computed each on its own, so
        stacking them gives the same numbers in one call."""
        if not (cls.joinable(parts) and type(parts[0]) is cls):
            raise ValueError(f"side_by_side takes {cls.__name__}s on the integer-dot kernel")
        joined = cls.__new__(cls)  # its buffers are the parts', stacked: no codes to pack
        nn.Module.__init__(joined)
        joined.register_buffer("dense", torch.cat([part.dense for part in parts]))
        joined.register_buffer("tiles", torch.cat([part.tiles for part in parts]))
        joined.integer_kernel, joined.isa = True, parts[0].isa
        return joined

    @classmethod
    def quantize(cls, linear: nn.Linear, integer_kernel: bool | None = None) -> _PackedLinear:
        """Round a float weight to `cls.BITS` bits: each group's own minimum and range."""
        w = linear.weight.detach().float()
        n, k = w.shape
        groups = w.view(n, k // cls.GROUP, cls.GROUP)
        low, high = groups.amin(-1), groups.amax(-1)
        top = 2**cls.BITS - 1
        scale = ((high - low) / top).clamp(min=1e-12)
        q = torch.round((groups - low[..., None]) / scale[..., None]).clamp(0, top)
        groups = QuantGroups(q.view(n, k).to(torch.uint8), scale, low, cls.BITS)
        return cls(groups, integer_kernel)


def _dequantize(groups: QuantGroups) -> torch.Tensor:
    n, k = groups.codes.shape
    codes = groups.codes.view(n, k // _PackedLinear.GROUP, _PackedLinear.GROUP).float()
    return (codes * groups.scale[..., None] + groups.minimum[..., None]).view(n, k)


class Int4Linear(_PackedLinear):
    """4-bit codes per group of 32 (GGUF's Q4_0 and Q4_1, whose codes are taken as stored)."""

    BITS = 4

    def __init__(self, groups: QuantGroups, integer_kernel: bool | None = None):
        assert groups.bits == self.BITS
        dense = _dequantize(groups)
        super().__init__(groups.codes, groups.scale, groups.minimum, dense, integer_kernel)


class Int8Linear(_PackedLinear):
    """8-bit codes per group of 32 (GGUF's Q8_0, taken as stored), on the int4 kernel: a code is
    16 * hi + lo with hi and lo 4-bit, so x @ W^T = [x, x] @ [W_hi, W_lo]^T, one call over twice
    the inputs: W_hi's groups have scale 16 * scale and the minimum, W_lo's the scale and no
    minimum. For the output head `bench/kernels.py` times it at 3.7 ms a row against 5.4 ms for
    torch's int8 kernel (one scale per output channel)."""

    BITS = 8

    def __init__(self, groups: QuantGroups, integer_kernel: bool | None = None):
        assert groups.bits == self.BITS
        hi, lo = groups.codes >> 4, groups.codes & 0x0F
        scale = torch.cat([16 * groups.scale, groups.scale], dim=1)
        minimum = torch.cat([groups.minimum, torch.zeros_like(groups.minimum)], dim=1)
        codes, dense = torch.cat([hi, lo], dim=1), _dequantize(groups)
        super().__init__(codes, scale, minimum, dense, integer_kernel)

    def packed(self, flat: torch.Tensor) -> torch.Tensor:
        return super().packed(torch.cat([flat, flat], dim=-1))


class _Split(nn.Module):
    """Linears that read one input, run as one (`_PackedLinear.side_by_side`): returns their
    outputs as a tuple, as calling each would."""

    def __init__(self, parts: list[_PackedLinear]):
        super().__init__()
        self.joined = type(parts[0]).side_by_side(parts)
        self.sizes = [part.dense.shape[0] for part in parts]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.joined(x).split(self.sizes, dim=-1)


def fuse_projections(model: Llama) -> Llama:
    """q, k and v, and the MLP's gate and up, each as one matmul (`qkv_proj`, `gate_up_proj`),
    where they run on the integer-dot kernel: one call instead of three rounds the activations
    once and wakes the threads once, for the same numbers. A batch-1 decode step of the default
    model: 1.1-1.2x faster at 1 and 2 threads (docs/benchmarks.md). Torch's int4 kernel (the
    fallback) keeps its separate calls: its packed layout is its own."""
    for layer in model.layers:
        for owner, names, joined in (
            (layer.self_attn, ("q_proj", "k_proj", "v_proj"), "qkv_proj"),
            (layer.mlp, ("gate_proj", "up_proj"), "gate_up_proj"),
        ):
            parts = [getattr(owner, name) for name in names]
            if not _PackedLinear.joinable(parts):
                continue
            setattr(owner, joined, _Split(parts))
            for name in names:  # the joined copy replaces them: no weight is held twice
                setattr(owner, name, None)
    return model


def apply_precision(
    model: Llama,
    precision: str,
    stored: Mapping[str, QuantGroups] | None = None,
    integer_kernel: bool | None = None,
) -> Llama:
    """Convert `model` (float32, as loaded) in place. For int8 and int4, `stored` (from
    `gguf_io.read_quant_groups`) gives layers the quantized weights their file stores, where
    their bits match, instead of rounding the float32 copy again: a Q4_1 file's groups are kept
    as they are, and a Q4_0 file's (symmetric, so rarely spanning all 16 codes) are not
    re-rounded onto a different grid. `integer_kernel`: as `_PackedLinear`'s."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "bf16":
        cos, sin = model.rope_cos, model.rope_sin
        model.to(torch.bfloat16)
        model.rope_cos, model.rope_sin = cos, sin
    elif precision in ("int8", "int4"):
        # Every projection, and the output head (its own copy when tied: the embedding lookup
        # reads one row per token, so it stays float). The head stays 8-bit even in int4 mode:
        # logits are the most sensitive to it (GGUF files keep it at Q8_0 or better for the same
        # reason), and with an int4 head the default model's greedy answers went wrong
        # ("the capital of France is L'Etoile"), while int8 kept them (measured, 6 prompts).
        for name, module in list(model.named_modules()):
            if not isinstance(module, nn.Linear) or not _PackedLinear.fits(module):
                continue  # stays float
            kind = Int4Linear if precision == "int4" and name != "lm_head" else Int8Linear
            groups = (stored or {}).get(name)
            if groups is not None and groups.bits == kind.BITS:
                quantized = kind(groups, integer_kernel)
            else:
                quantized = kind.quantize(module, integer_kernel)
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent), attr, quantized)
    return model


def load_for_serving(
    path: str | Path | None, precision: str, integer_kernel: bool | None = None,
    fuse: bool = True,
) -> tuple[Llama, Tokenizer]:  # fmt: skip
    """A model as the engine serves it: loaded (default: the bundled one), then converted to
    `precision`, an int4 or int8 GGUF model with the 4- and 8-bit weights its file stores, and
    its projections fused (`fuse_projections`) unless `fuse` is False."""
    model, tokenizer = load_pretrained(path)
    stored = read_quantized_weights(path) if precision in ("int8", "int4") else {}
    model = apply_precision(model, precision, stored, integer_kernel)
    return fuse_projections(model) if fuse else model, tokenizer
