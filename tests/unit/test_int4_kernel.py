"""The integer-dot int4 kernel (engine/int4_kernel.py) computes the product of its weights and
its inputs, on each ISA path this CPU and torch's chosen kernels allow, within the bound the
int8 rounding of the inputs sets (tests/reference.int_activation_bound, derived there)."""

from __future__ import annotations

import pytest
import torch

from chatworks.engine import int4_kernel, precision
from chatworks.engine.precision import Int4Linear, Int8Linear, load_for_serving
from chatworks.model.gguf_io import QuantGroups
from tests.reference import int_activation_bound

pytestmark = [
    pytest.mark.kernels,  # run again under ATEN_CPU_CAPABILITY=avx2: the AVX2 path there
    pytest.mark.skipif(not int4_kernel.available(), reason=str(int4_kernel.unavailable_reason())),
]

# Under AVX2 kernels (make test's second run) only the AVX2 path runs, as the engine's would.
PATHS = [
    pytest.param(path, id=name, marks=pytest.mark.skipif(
        int4_kernel.isa() is None or path > int4_kernel.isa(), reason=f"{name} not chosen here"))
    for path, name in [(int4_kernel.AVX2, "avx2"), (int4_kernel.AVX512_VNNI, "avx512-vnni")]
]  # fmt: skip


def random_weight(out: int, inputs: int, generator: torch.Generator):
    """Codes, float16-exact scales and minimums (as a GGUF file's), and the weight they mean."""
    codes = torch.randint(0, 16, (out, inputs), dtype=torch.uint8, generator=generator)
    scale = (torch.rand(out, inputs // 32, generator=generator) * 0.02).half().float()
    minimum = (-8 * scale * torch.rand(out, inputs // 32, generator=generator)).half().float()
    groups = codes.view(out, -1, 32).float() * scale[..., None] + minimum[..., None]
    return codes, scale, minimum, groups.view(out, inputs)


def check(got: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> None:
    exact = x.double() @ weight.double().T
    excess = float(((got.double() - exact).abs() - int_activation_bound(x, weight)).max())
    assert excess <= 0, f"beyond the integer rounding bound by {excess:.3g}"


@pytest.mark.parametrize("path", PATHS)
def test_the_kernel_gives_the_product_on_random_shapes(path):
    generator = torch.Generator().manual_seed(0)
    # One tile and one block; the model's shapes (q/o, k/v, MLP up and down); rows beyond the
    # rows per pass over the weights (4 on AVX-512, 2 on AVX2).
    for out, inputs, rows in [(16, 32, 1), (576, 576, 1), (192, 576, 2), (1536, 576, 3),
                              (576, 1536, 4), (48, 96, 7)]:  # fmt: skip
        codes, scale, minimum, weight = random_weight(out, inputs, generator)
        x = torch.randn(rows, inputs, generator=generator) * 3
        x[:, 5] = 40  # an outlier channel, as hidden states have: its group's scale is coarse
        got = int4_kernel.int4_mm(x, int4_kernel.pack(codes, scale, minimum), path)
        assert got.shape == (rows, out)
        check(got, x, weight)


@pytest.mark.parametrize("path", PATHS)
def test_the_bound_fails_a_wrong_layout(path):
    """Tight enough to fail the mistakes a packing can make: the two nibbles of a byte swapped
    (inputs j and j + 4 of each 8 exchanged), or one tile's rows in another order."""
    generator = torch.Generator().manual_seed(1)
    codes, scale, minimum, weight = random_weight(64, 576, generator)
    x = torch.randn(2, 576, generator=generator)
    swapped_nibbles = codes.view(64, -1, 2, 4).flip(2).reshape(64, 576)
    reordered_rows = codes.view(4, 16, 576).flip(1).reshape(64, 576)
    for wrong in (swapped_nibbles, reordered_rows):
        got = int4_kernel.int4_mm(x, int4_kernel.pack(wrong, scale, minimum), path)
        with pytest.raises(AssertionError, match="beyond"):
            check(got, x, weight)


def test_the_path_follows_torchs_cpu_capability():
    capability = torch.backends.cpu.get_cpu_capability()
    if capability == "AVX2":  # also ATEN_CPU_CAPABILITY=avx2 on an AVX-512 CPU
        assert int4_kernel.isa() == int4_kernel.AVX2
    elif capability.startswith("AVX512") and torch.cpu._is_vnni_supported():
        assert int4_kernel.isa() == int4_kernel.AVX512_VNNI


@pytest.mark.parametrize("kind", [Int4Linear, Int8Linear])
def test_decode_rows_of_a_quantized_linear_take_the_kernel(kind):
    """A layer's few rows (decoding) go through the kernel, for the 8-bit output head's two
    4-bit halves of each code too (its scale 16 s and s, float16-exact as the file's s)."""
    generator = torch.Generator().manual_seed(2)
    codes = torch.randint(0, 2**kind.BITS, (160, 576), dtype=torch.uint8, generator=generator)
    scale = (torch.rand(160, 18, generator=generator) * 0.01).half().float()
    minimum = (-(2 ** (kind.BITS - 1)) * scale).half().float()  # symmetric, as Q4_0 and Q8_0
    layer = kind(QuantGroups(codes, scale, minimum, kind.BITS), integer_kernel=True)
    weight = codes.view(160, 18, 32).float() * scale[..., None] + minimum[..., None]
    x = torch.randn(3, 576, generator=generator)
    check(layer(x), x, weight.view(160, 576))


@pytest.mark.parametrize("kind", [Int4Linear, Int8Linear])
def test_linears_side_by_side_give_each_ones_output(kind):
    """q, k and v (or gate and up) joined into one call (`fuse_projections`) compute the same
    numbers on the kernel's rows: each tile of 16 outputs is computed alone, from the same
    rounded activations. Rows past the kernel's take the dense copy, one matmul instead of
    three: the same products summed maybe in another order (float32 sums, K terms) and
    rounded once more to the dense dtype (one unit in its last place)."""
    generator = torch.Generator().manual_seed(3)
    parts = []
    for out in (576, 192, 192):
        linear = torch.nn.Linear(576, out, bias=False)
        torch.nn.init.normal_(linear.weight, std=0.05, generator=generator)
        parts.append(kind.quantize(linear, integer_kernel=True))
    joined = precision._Split(parts)
    for rows in (1, 2, 3, 4, 7):
        x = torch.randn(rows, 576, generator=generator)
        for got, part in zip(joined(x), parts, strict=True):
            want = part(x)
            if rows <= kind.MAX_PACKED_ROWS:
                assert torch.equal(got, want)
            else:
                magnitude = x.abs() @ part.dense.float().abs().T
                bound = (576 * torch.finfo(torch.float32).eps * magnitude
                         + torch.finfo(part.dense.dtype).eps * want.abs())  # fmt: skip
                assert ((got - want).abs() <= bound).all()


def test_the_served_model_runs_its_projections_joined_with_the_same_logits():
    """`load_for_serving` joins q/k/v and gate/up (and drops the separate copies); a decode
    pass's logits are those of the model with separate calls, exactly (same kernel, tiles)."""
    fused, tokenizer = load_for_serving(None, "int4")
    separate, _ = load_for_serving(None, "int4", fuse=False)
    attention, mlp = fused.layers[0].self_attn, fused.layers[0].mlp
    assert attention.qkv_proj is not None and attention.q_proj is None
    assert mlp.gate_up_proj is not None and mlp.up_proj is None
    tokens = torch.tensor([tokenizer.encode("The lighthouse")])  # rows the kernel takes
    assert tokens.shape[1] <= Int4Linear.MAX_PACKED_ROWS
    with torch.inference_mode():
        assert torch.equal(fused(tokens), separate(tokens))


def test_without_a_compiler_nothing_is_built_and_the_reason_is_given(monkeypatch, tmp_path):
    """Where no library is cached and no compiler is found, the build says so (the engine then
    keeps torch's int4 kernel, `unavailable_reason`) instead of failing later."""
    monkeypatch.setattr(int4_kernel, "_places", lambda: [tmp_path])
    monkeypatch.setenv("CXX", "no-such-compiler")
    with pytest.raises(RuntimeError, match=r"no C\+\+ compiler"):
        int4_kernel.build()
    assert not list(tmp_path.iterdir())
