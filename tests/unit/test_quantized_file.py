"""int4/int8 serving computes with the 4- and 8-bit weights a GGUF file stores, not a second
rounding."""

from __future__ import annotations

import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter
from gguf.quants import dequantize, quantize

from chatworks.engine.precision import Int4Linear, Int8Linear
from chatworks.model import bundled_model_path, gguf_io, read_quantized_weights
from tests.reference import assert_within_rounding


def as_weights(groups: gguf_io.QuantGroups) -> torch.Tensor:
    n, k = groups.codes.shape
    codes = groups.codes.view(n, k // 32, 32).float()
    return (codes * groups.scale[..., None] + groups.minimum[..., None]).view(n, k)


def test_bundled_q4_1_and_q8_0_weights_equal_the_dequantized_file():
    reader = gguf_io.open_gguf(bundled_model_path())
    cfg = gguf_io.read_config(reader)
    state = gguf_io.read_state_dict(reader, cfg)
    groups = read_quantized_weights()
    # Every projection of every layer (Q4_1), and the Q8_0 embedding, also the tied output head.
    assert len(groups) == 7 * cfg.n_layers + 2
    assert {g.bits for g in groups.values()} == {4, 8}
    assert groups["lm_head"].bits == 8
    for name, weight in groups.items():
        assert torch.equal(as_weights(weight), state[f"{name}.weight"]), name


def test_8bit_codes_run_on_the_4bit_kernel_as_two_halves():
    # The packed int8 path (<= 4 rows) runs the int4 kernel on [x, x] against [high nibbles |
    # low nibbles]; more rows use the dense copy. A wrong split, scale or minimum would leave
    # the two far apart (by about the weights' own size); the kernel's bf16 scales and outputs
    # part them by bf16 roundings over 2 x 96 products (tests/reference.py). This is torch's
    # int4 kernel; the integer-dot one's halves are tested in test_int4_kernel.py.
    linear = torch.nn.Linear(96, 48, bias=False)
    int8 = Int8Linear.quantize(linear, integer_kernel=False)
    x = torch.randn(3, 96, generator=torch.Generator().manual_seed(0))
    packed, dense = int8(x), int8(x.repeat(2, 1))[:3]
    assert_within_rounding(packed, dense, dtype=torch.bfloat16, depth=1, terms=2 * 96)
    # 8 bits keep the product: 4-bit weights would give a cosine near 0.99.
    assert torch.nn.functional.cosine_similarity(packed, linear(x), dim=-1).min() > 0.9999


def test_q4_0_codes_are_kept_where_rounding_again_would_move_them(tmp_path):
    # Q4_0 is symmetric (w = (q - 8) * d): a group rarely uses code 15, so re-quantizing its
    # dequantized weights over their own min..max range lands on another grid.
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 128)).astype(np.float32)
    path = tmp_path / "q4_0.gguf"
    writer = GGUFWriter(path, "llama")
    writer.add_tensor(
        "blk.0.ffn_up.weight", quantize(w, GGMLQuantizationType.Q4_0),
        raw_dtype=GGMLQuantizationType.Q4_0,
    )  # fmt: skip
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    reader = GGUFReader(path)
    stored = dequantize(reader.tensors[0].data, GGMLQuantizationType.Q4_0).reshape(64, 128)
    cfg = gguf_io.read_config(gguf_io.open_gguf(bundled_model_path()))
    groups = gguf_io.read_quant_groups(reader, cfg)["layers.0.mlp.up_proj"]
    assert torch.equal(as_weights(groups), torch.from_numpy(stored))

    from_file = Int4Linear(groups)
    linear = torch.nn.Linear(128, 64, bias=False)
    linear.weight.data = torch.from_numpy(stored)
    rounded_again = Int4Linear.quantize(linear)
    expected = torch.from_numpy(stored).to(from_file.dense.dtype)  # bf16 or float32, by CPU
    assert torch.equal(from_file.dense, expected)
    assert not torch.equal(rounded_again.dense, expected)
    # The kernel path (<= 4 rows) unpacks the same codes: a wrong nibble order or grid would
    # leave little of the product. bfloat16 (torch's kernel) or int8 (the integer-dot one)
    # rounding of the inputs moves single outputs, not the direction.
    x = torch.randn(2, 128, generator=torch.Generator().manual_seed(0))
    got, want = from_file(x), x.bfloat16().float() @ expected.float().T
    assert torch.nn.functional.cosine_similarity(got, want, dim=-1).min() > 0.999
