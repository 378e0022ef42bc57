"""The native model against transformers, both loaded from the bundled SmolLM2 GGUF."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch
from safetensors.torch import save_file

from chatworks.engine.precision import apply_precision
from chatworks.engine.sampling import SamplingParams
from chatworks.engine.scheduler import Engine
from chatworks.model import bundled_model_path, load_pretrained
from tests.reference import assert_near_greedy, assert_within_rounding

pytestmark = pytest.mark.kernels  # computes with real weights: run again on AVX2

os.environ["HF_HUB_OFFLINE"] = "1"

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time 12345 émigré 😀",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
]
NEW_TOKENS = 20


@pytest.fixture(scope="module")
def reference():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = bundled_model_path()
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    )
    return model.eval(), tok


@pytest.fixture(scope="module")
def native():
    return load_pretrained()


def test_weights_equal_transformers_dequantization(reference, native):
    ref_state = reference[0].state_dict()
    for name, tensor in native[0].state_dict().items():
        ref_name = name if name.startswith("lm_head") else f"model.{name}"
        torch.testing.assert_close(tensor, ref_state[ref_name], rtol=0, atol=0, msg=name)


@pytest.mark.parametrize(
    "text",
    [
        *PROMPTS,
        "  spaces\n\n\ttabs 3.14159 x=1000000 don't I'M",
        "中文 ñ ü ß <file_sep>",
    ],
)
def test_tokenizer_encodes_like_transformers(reference, native, text):
    ids = native[1].encode(text)
    assert ids == reference[1](text).input_ids
    assert native[1].decode(ids, skip_special_tokens=False) == text


def test_chat_template_renders_like_transformers(reference, native):
    conversations = [
        [{"role": "user", "content": "Hi!"}],
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "2+2?"},
        ],
    ]
    for messages in conversations:
        expected = reference[1].apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        assert native[1].apply_chat_template(messages, add_generation_prompt=True) == expected


def test_logits_match_transformers(reference, native):
    ids = torch.tensor([native[1].encode(PROMPTS[0])])
    with torch.inference_mode():
        expected = reference[0](ids).logits
        got = native[0](ids)
    assert_within_rounding(got, expected)  # float32, other kernels: tests/reference.py


def test_greedy_fp32_picks_transformers_best_tokens(reference, native):
    """Every token the engine picks, and the end of turn where it stops, is transformers' best
    next token for that prefix, up to a near-tie (tests/reference.py): two implementations
    with different kernels, so their texts may part at a tie on some CPU, never at a real gap."""
    engine = Engine(native[0], slots=2).start()
    eos = native[1].eos_token_ids
    params = SamplingParams(max_tokens=NEW_TOKENS, temperature=0, stop_token_ids=eos)

    def logits_of(ids: list[int]) -> torch.Tensor:
        return reference[0](torch.tensor([ids])).logits[0]

    try:
        for prompt in PROMPTS:
            ids = native[1].encode(prompt)
            tokens, finish = engine.generate(ids, params)
            if finish.reason == "stop":  # the engine does not emit the EOS it stopped at
                with torch.inference_mode():
                    last = logits_of([*ids, *tokens])[-1]
                tokens = [*tokens, max(eos, key=lambda t: float(last[t]))]
            else:
                assert (finish.reason, len(tokens)) == ("length", NEW_TOKENS), prompt
            assert_near_greedy(logits_of, ids, tokens)
    finally:
        engine.stop()


def test_cached_decoding_equals_full_recompute(native):
    """Prefill + one-token steps through the KV cache give the logits of a full forward pass."""
    from chatworks.engine.kv_cache import KVCache

    model = native[0]
    ids = native[1].encode(PROMPTS[1])
    cache = KVCache(model.cfg, slots=1, dtype=torch.float32, max_len=64)
    cache.reserve(1, 3)  # then it must grow, keeping what it holds
    with torch.inference_mode():
        full = model(torch.tensor([ids]))[0]
        split = 3
        parts = [model(torch.tensor([ids[:split]]), kv=cache.views(0, 1), kv_len=split)[0]]
        for pos in range(split, len(ids)):
            cache.reserve(1, pos + 1)
            parts.append(
                model(
                    torch.tensor([[ids[pos]]]),
                    torch.tensor([[pos]]),
                    kv=cache.views(0, 1),
                    kv_len=pos + 1,
                )[0]
            )
    assert_within_rounding(torch.cat(parts), full)


def test_hf_directory_loads_same_model(reference, native, tmp_path):
    # transformers refuses to save a GGUF-loaded model, so write the HF layout by hand.
    state = reference[0].state_dict()
    del state["lm_head.weight"]  # tied to the embedding
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    config = reference[0].config.to_dict()
    config.pop("quantization_config")
    (tmp_path / "config.json").write_text(json.dumps(config))
    reference[1].save_pretrained(tmp_path)
    model, tokenizer = load_pretrained(tmp_path)
    assert model.cfg == native[0].cfg
    ids = torch.tensor([native[1].encode(PROMPTS[0])])
    with torch.inference_mode():
        torch.testing.assert_close(model(ids), native[0](ids), rtol=0, atol=0)
    messages = [{"role": "user", "content": "Hi!"}]
    assert tokenizer.apply_chat_template(messages) == native[1].apply_chat_template(messages)
    assert tokenizer.encode(PROMPTS[2]) == native[1].encode(PROMPTS[2])
    assert tokenizer.eos_token_ids == native[1].eos_token_ids


@pytest.mark.parametrize("precision", ["bf16", "int8", "int4"])
def test_reduced_precision_stays_close_to_fp32(native, precision):
    model = apply_precision(copy.deepcopy(native[0]), precision)
    if precision == "int4":  # the output head stays 8-bit (docs/benchmarks.md says why)
        assert type(model.lm_head).__name__ == "Int8Linear"
        assert type(model.layers[0].mlp.down_proj).__name__ == "Int4Linear"
    ids = torch.tensor([native[1].encode(PROMPTS[0])])
    with torch.inference_mode():
        got, expected = model(ids)[0], native[0](ids)[0]
    assert (got.argmax(-1) == expected.argmax(-1)).float().mean() >= 0.8
    assert torch.nn.functional.cosine_similarity(got, expected, dim=-1).min() > 0.98


def test_rejects_unsupported_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_pretrained(tmp_path / "missing.bin")
