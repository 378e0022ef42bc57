"""SFT loss masking, SFT training, and exports that other loaders read back token for token."""

from __future__ import annotations

import os

import pytest
import torch

from chatworks.engine.sampling import SamplingParams
from chatworks.engine.scheduler import Engine
from chatworks.model import load_pretrained
from chatworks.training.evaluate import greedy
from chatworks.training.export import export
from chatworks.training.presets import get_preset
from chatworks.training.pretrain import pretrain
from chatworks.training.sft import example, read_sharegpt, render, sft
from tests.unit.training_corpus import conversations, prepare_data

os.environ["HF_HUB_OFFLINE"] = "1"
PRESET = get_preset("micro")
PROMPTS = [
    "The small cat",
    "Story 3.\n\nThe",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A micro run: tokenizer, shards, a few pretraining steps, a few SFT steps."""
    root = tmp_path_factory.mktemp("run")
    prepare_data(root, PRESET)
    pretrain(PRESET, root / "data", root / "tokenizer", root / "base", log=lambda _: None)
    return root


def test_only_assistant_tokens_carry_loss(run):
    _, tokenizer = load_pretrained(run / "base")
    chat = conversations(1)[0]
    ids, mask = render(tokenizer, chat)
    assert tokenizer.decode(ids, skip_special_tokens=False) == tokenizer.apply_chat_template(
        chat, add_generation_prompt=False
    )
    trained = tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m], False)
    answers = [m["content"] for m in chat if m["role"] == "assistant"]
    assert trained == "".join(f"{a}<|im_end|>\n" for a in answers)
    x, y = example(tokenizer, chat, seq_len=PRESET.seq_len * 4)
    assert torch.equal(x, torch.tensor(ids[:-1]))
    assert [t for t in y.tolist() if t >= 0] == [
        i for i, m in zip(ids[1:], mask[1:], strict=True) if m
    ]


def test_sft_learns_the_answers(run):
    losses = sft(
        PRESET, run / "base" / "checkpoint", conversations(40), run / "sft", log=lambda _: None
    )
    assert sum(losses[-3:]) / 3 < 0.6 * losses[0]


def test_sharegpt_decodes_a_truncated_array(tmp_path):
    turns = '[{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]'
    item = f'{{"id": "a", "conversations": {turns}}}'
    path = tmp_path / "dump.json"
    path.write_text(f"[\n  {item},\n  {item},\n  {item[:40]}")
    chats = list(read_sharegpt(path))
    assert chats == 2 * [
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    ]


def _reference_tokens(run) -> tuple[list[list[int]], list[list[int]]]:
    model, tokenizer = load_pretrained(run / "base")
    prompts = [tokenizer.encode(p) for p in PROMPTS]
    return prompts, [greedy(model, p, 12) for p in prompts]


def _assert_transformers_generates_the_same(run, hf_model, hf_tok) -> None:
    prompts, expected = _reference_tokens(run)
    for text, ids, want in zip(PROMPTS, prompts, expected, strict=True):
        assert hf_tok(text, add_special_tokens=False).input_ids == ids
        got = hf_model.generate(
            torch.tensor([ids]), max_new_tokens=12, do_sample=False, eos_token_id=None,
            pad_token_id=0,
        )  # fmt: skip
        assert got[0, len(ids) :].tolist() == want


def test_hf_export_loads_in_transformers_with_same_greedy_tokens(run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = export(run / "base", "hf", tmp_path / "hf")
    hf_model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert type(hf_model).__name__ == "LlamaForCausalLM"
    _assert_transformers_generates_the_same(run, hf_model, AutoTokenizer.from_pretrained(out))
    # Our own loader reads the export too, weights unchanged.
    model, _ = load_pretrained(out)
    reference, _ = load_pretrained(run / "base")
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor, rtol=0, atol=0)


def test_gguf_export_serves_on_the_native_engine_with_same_greedy_tokens(run, tmp_path):
    out = export(run / "base", "gguf", tmp_path / "model.gguf")
    prompts, expected = _reference_tokens(run)
    model, tokenizer = load_pretrained(out)
    engine = Engine(model, slots=2, max_waiting=4).start()
    try:
        for text, ids, want in zip(PROMPTS, prompts, expected, strict=True):
            assert tokenizer.encode(text) == ids
            got, _ = engine.generate(ids, SamplingParams(max_tokens=12, temperature=0))
            stop = set(tokenizer.eos_token_ids)
            cut = next((i for i, t in enumerate(want) if t in stop), len(want))
            assert got[: len(want[:cut])] == want[:cut]
    finally:
        engine.stop()
    assert tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}]) == PROMPTS[2]


def test_gguf_export_reads_the_same_in_an_independent_gguf_reader(run, tmp_path):
    """transformers' GGUF loader follows llama.cpp's conventions (tensor names, q/k permutation,
    tokenizer metadata), not ours: agreeing with it is the check that others can load the file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    export(run / "base", "gguf", tmp_path / "model.gguf")
    hf_model = AutoModelForCausalLM.from_pretrained(
        tmp_path, gguf_file="model.gguf", dtype=torch.float32
    ).eval()
    hf_tok = AutoTokenizer.from_pretrained(tmp_path, gguf_file="model.gguf")
    _assert_transformers_generates_the_same(run, hf_model, hf_tok)
