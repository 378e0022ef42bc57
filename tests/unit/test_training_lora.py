"""LoRA adapters: a step trains only the adapter, and the merged model computes what the
adapted one does (within float32 rounding), through checkpoints and exports."""

from __future__ import annotations

import os

import pytest
import torch

from chatworks.model import adapters, load_pretrained
from chatworks.model.adapters import AdapterSpec
from chatworks.training.ddp import World
from chatworks.training.export import export
from chatworks.training.lora import add_lora, count_parameters, load_lora_weights
from chatworks.training.optim import build_optimizers
from chatworks.training.presets import get_preset
from chatworks.training.pretrain import optimizer_step
from chatworks.training.sft import build_examples, collate, sft
from tests.reference import within_rounding
from tests.unit.training_corpus import conversations, micro_checkpoint, one_thread

pytestmark = pytest.mark.usefixtures(one_thread.__name__)

os.environ["HF_HUB_OFFLINE"] = "1"
PRESET = get_preset("micro")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return micro_checkpoint(tmp_path_factory.mktemp("lora"))


def _batch(tokenizer, n=4):
    examples = build_examples(tokenizer, conversations(n), PRESET.seq_len)
    return collate(examples, tokenizer.pad_token_id or 0)


def test_a_lora_step_changes_only_adapter_weights(base):
    model, tokenizer = load_pretrained(base)
    trainable = add_lora(model, AdapterSpec(rank=4))
    assert trainable == count_parameters(model)[0] < count_parameters(model)[1] // 10
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    rates = dict.fromkeys(PRESET.learning_rates(), 1e-2)
    optimizers = build_optimizers(model, PRESET, rates)
    optimizer_step(model, params, optimizers, [_batch(tokenizer)], 1.0, World())
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed, "the step changed nothing"
    assert all(".lora_" in n for n in changed), sorted(changed)[:3]
    # B starts at zero (the adapted model starts as the base) and is what the first step moves.
    assert any(".lora_B" in n for n in changed)
    state = [s for opt in optimizers for s in opt.state.values()]
    assert len(state) == len(params)  # optimizer moments for the adapter only


def test_merged_equals_unmerged_logits(base, tmp_path):
    spec = AdapterSpec(rank=4)
    fast = PRESET.override(finetune_lr=3e-3, sft_steps=6)
    sft(fast, base, conversations(24), tmp_path / "run", adapter=spec, log=lambda _: None)
    checkpoint = tmp_path / "run" / "checkpoint"
    assert adapters.is_adapter(checkpoint) and not (checkpoint / "model.pt").exists()

    unmerged, tokenizer = load_pretrained(base)
    add_lora(unmerged, spec)
    load_lora_weights(unmerged, checkpoint)
    merged, _ = load_pretrained(tmp_path / "run")  # loading merges the adapter into its base
    original, _ = load_pretrained(base)
    x, _ = _batch(tokenizer)
    with torch.no_grad():
        want, got, start = unmerged(x), merged(x), original(x)
    bound = {"depth": merged.cfg.n_layers, "terms": merged.cfg.hidden_dim}
    difference, limit = within_rounding(got, want, **bound)
    assert difference <= limit, f"merged differs from unmerged by {difference:.3g} > {limit:.3g}"
    moved, _ = within_rounding(start, want, **bound)
    assert moved > 100 * limit, "the adapter did not change the model: the test proves nothing"

    export(tmp_path / "run", "hf", tmp_path / "hf")  # exports go through the merge too
    exported, _ = load_pretrained(tmp_path / "hf")
    with torch.no_grad():
        difference, limit = within_rounding(exported(x), want, **bound)
    assert difference <= limit
