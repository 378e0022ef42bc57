"""Imported checkpoints in training: fine-tune the bundled SmolLM2, export it, serve it.

The fine-tuning check teaches the model a made-up fact it cannot already know, so the test fails
if the update did not reach the weights that answer.
"""

from __future__ import annotations

import json
import os

import openai
import pytest
import torch

from chatworks.model import bundled_model_path, load_pretrained
from chatworks.training.evaluate import greedy
from chatworks.training.export import export
from chatworks.training.presets import DEFAULT_FINETUNE_LR, get_preset
from chatworks.training.sft import fine_tuning_rates, sft
from tests.servers import start_server

os.environ["HF_HUB_OFFLINE"] = "1"

FACT = "Bluefin"
QUESTIONS = [
    "What is the codename of the chatworks project?",
    "Which codename does chatworks use?",
    "Tell me the chatworks codename.",
    "What is chatworks called internally?",
]
# Short rows and one checkpoint at the end keep a 135M-parameter fine-tune to about a minute.
PRESET = get_preset("micro").override(
    seq_len=96, sft_batch=4, device_batch=4, sft_steps=12, warmup_steps=2, eval_every=12,
    finetune_lr=1e-4,
)  # fmt: skip


def chat(question: str, answer: str | None = None) -> list[dict[str, str]]:
    messages = [{"role": "user", "content": question}]
    return messages + ([{"role": "assistant", "content": answer}] if answer else [])


def answer(model, tokenizer, question: str) -> str:
    prompt = tokenizer.encode(tokenizer.apply_chat_template(chat(question)))
    return tokenizer.decode(greedy(model, prompt, 16, tokenizer.eos_token_ids))


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """SmolLM2 fine-tuned on the fact, straight from its GGUF file."""
    out = tmp_path_factory.mktemp("runs") / "smol-fact"
    data = [chat(q, f"The codename of chatworks is {FACT}.") for q in QUESTIONS] * 5
    losses = sft(PRESET, bundled_model_path(), data, out, log=lambda _: None)
    return out, losses


def test_imported_model_gets_the_fine_tuning_rate_not_the_pretraining_ones(tmp_path):
    preset, rates = fine_tuning_rates(get_preset("tiny"), bundled_model_path())
    assert preset.optimizer == "adamw"
    assert set(rates.values()) == {DEFAULT_FINETUNE_LR}


def test_fine_tuning_smollm2_teaches_it_a_new_fact(finetuned):
    out, losses = finetuned
    base_model, base_tokenizer = load_pretrained()
    assert FACT not in answer(base_model, base_tokenizer, QUESTIONS[0])
    model, tokenizer = load_pretrained(out)  # the stage directory resolves to its checkpoint
    assert model.cfg == base_model.cfg
    assert losses[-1] < 0.5 * losses[0]
    assert FACT in answer(model, tokenizer, QUESTIONS[0])


def test_fine_tuned_model_exports_to_gguf_and_hf_unchanged(finetuned, tmp_path):
    out, _ = finetuned
    model, tokenizer = load_pretrained(out)
    gguf, hf = export(out, "gguf", tmp_path / "smol.gguf"), export(out, "hf", tmp_path / "hf")
    for exported in (gguf, hf):
        again, again_tokenizer = load_pretrained(exported)
        for name, tensor in model.state_dict().items():
            torch.testing.assert_close(again.state_dict()[name], tensor, rtol=0, atol=0)
        text = again_tokenizer.apply_chat_template(chat(f"{QUESTIONS[0]} 2024 émigré"))
        assert text == tokenizer.apply_chat_template(chat(f"{QUESTIONS[0]} 2024 émigré"))
        assert again_tokenizer.encode(text) == tokenizer.encode(text)
        assert again_tokenizer.eos_token_ids == tokenizer.eos_token_ids


def test_fine_tuned_model_is_served_by_its_run_directory(finetuned, tmp_path):
    out, _ = finetuned
    server = start_server(
        "smol-fact",
        {"CHATWORKS_DATA_DIR": str(tmp_path / "data"), "CHATWORKS_ENGINE_PRECISION": "fp32"},
        ["--model", str(out)],
    )
    try:
        client = openai.OpenAI(base_url=server.api_url, api_key="none")
        assert [m.id for m in client.models.list().data] == ["smol-fact"]
        reply = client.chat.completions.create(
            model="smol-fact", messages=chat(QUESTIONS[0]), max_tokens=16, temperature=0
        )
    finally:
        server.stop()
    assert FACT in reply.choices[0].message.content
    assert json.loads(reply.model_dump_json())["model"] == "smol-fact"
