"""DPO: log 2 at the start (policy == reference), falling on a separable toy set, reward
accuracy on held-out pairs; pairs ranked by checks code can run."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from chatworks.model import load_pretrained
from chatworks.training import tasks
from chatworks.training.dpo import (
    Pair,
    dpo,
    dpo_loss,
    encode,
    read_pairs,
    reference_logprobs,
    write_pairs,
)
from chatworks.training.preferences import rank
from chatworks.training.presets import get_preset
from tests.unit.training_corpus import micro_checkpoint, one_thread

pytestmark = pytest.mark.usefixtures(one_thread.__name__)

PRESET = get_preset("micro")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return micro_checkpoint(tmp_path_factory.mktemp("dpo"))


def toy_pairs(n: int, seed: int) -> list[Pair]:
    """Separable: the chosen answer names the question's animal, the rejected one does not."""
    rng = random.Random(seed)
    animals = ["cat", "dog", "bird", "robot", "king", "river"]
    pairs = []
    for _ in range(n):
        a, b = rng.sample(animals, 2)
        prompt = [{"role": "user", "content": f"Which one is the {a}?"}]
        pairs.append(Pair(prompt, f"The {a}.", f"The {b} sees the {b}."))
    return pairs


def test_loss_is_log_2_when_the_policy_is_the_reference(base):
    model, tokenizer = load_pretrained(base)
    encoded = [encode(tokenizer, p, 64) for p in toy_pairs(6, 0)]
    reference = reference_logprobs(model, encoded, torch.device("cpu"), 0)
    policy = reference_logprobs(model, encoded, torch.device("cpu"), 0)
    loss, numbers = dpo_loss(policy, reference, beta=0.1)
    assert float(loss) == pytest.approx(math.log(2), abs=1e-6)
    assert numbers["reward_margin"] == 0 and numbers["reward_accuracy"] == 0


def test_loss_falls_on_a_separable_set(base, tmp_path):
    preset = PRESET.override(finetune_lr=1e-3, sft_batch=8, device_batch=4, seq_len=48)
    val = toy_pairs(8, 1)
    losses = dpo(preset, base, toy_pairs(48, 0), tmp_path / "dpo", beta=0.1, epochs=1.0,
                 val_pairs=val, log=lambda _: None)  # fmt: skip
    assert losses[0] == pytest.approx(math.log(2), abs=1e-3)  # the first step starts at log 2
    assert max(losses[-2:]) < 0.7 * math.log(2)
    last = [json.loads(x) for x in (tmp_path / "dpo" / "metrics.jsonl").read_text().splitlines()]
    evaluated = [m for m in last if "val_reward_accuracy" in m][-1]
    assert evaluated["val_reward_accuracy"] == 1.0  # held-out pairs, never trained on
    assert (tmp_path / "dpo" / "reference.pt").exists()


def test_pairs_round_trip_and_accept_a_plain_prompt(tmp_path):
    path = tmp_path / "pairs.jsonl"
    write_pairs(path, toy_pairs(2, 0), [{"kind": "toy"}, {"kind": "toy"}])
    assert read_pairs(path) == toy_pairs(2, 0)
    path.write_text(json.dumps({"prompt": "Hi", "chosen": "Hello.", "rejected": "No."}) + "\n")
    assert read_pairs(path)[0].prompt == [{"role": "user", "content": "Hi"}]


def test_pairs_are_ranked_by_the_checks():
    task = tasks.grounded(random.Random(3), answerable=True)
    right, wrong = task.reference, "I don't know based on the provided documents."
    pair, info = rank(task, [wrong, right, wrong])
    assert (pair.chosen, pair.rejected) == (right, wrong)
    assert info["chosen_from"] == "sample" and info["samples_correct"] == 1
    pair, info = rank(task, [wrong, wrong])  # no sample right: the reference stands in
    assert pair.chosen == task.reference and info["chosen_from"] == "reference"
    assert rank(task, [right, right]) is None  # nothing to prefer
