"""Multiple-choice scoring by log-likelihood, bits per byte, and the report (no training needed)."""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F

from chatworks.model.config import ModelConfig
from chatworks.model.llama import Llama
from chatworks.training.evaluate import MCItem, choice_logprobs, cloze_task, mc_accuracy
from chatworks.training.tokenizer_train import train_tokenizer
from tests.unit.training_corpus import sentence


def _tokenizer(tmp_path):
    rng = random.Random(0)
    texts = [" ".join(sentence(rng) for _ in range(10)) for _ in range(50)]
    return train_tokenizer(texts, 320, tmp_path / "tok")


def _model(tokenizer) -> Llama:
    torch.manual_seed(0)
    cfg = ModelConfig.from_depth(1, tokenizer.vocab_size, 64, bos_token_id=0)
    return Llama(cfg).eval()


def test_choice_score_is_the_continuations_log_likelihood_per_byte(tmp_path):
    tokenizer = _tokenizer(tmp_path)
    model = _model(tokenizer)
    item = MCItem("The cat sees", (" the dog.", " the old robot opens the file."), 0)
    scores = choice_logprobs(model, tokenizer, item)
    for choice, score in zip(item.choices, scores, strict=True):
        context = [tokenizer.bos_token_id, *tokenizer.encode(item.context)]
        target = tokenizer.encode(choice)
        ids = torch.tensor([context + target])
        logp = F.log_softmax(model(ids[:, :-1])[0], -1)
        expected = sum(logp[len(context) - 1 + i, t].item() for i, t in enumerate(target))
        assert math.isclose(score, expected / len(choice.encode()), rel_tol=1e-5)


def test_accuracy_follows_the_argmax(tmp_path, monkeypatch):
    tokenizer = _tokenizer(tmp_path)
    model = _model(tokenizer)
    items = [MCItem("The cat", (" a.", " b.", " c."), i) for i in range(3)]
    from chatworks.training import evaluate

    monkeypatch.setattr(evaluate, "choice_logprobs", lambda m, t, item: [0.0, 1.0, 0.5])
    assert mc_accuracy(model, tokenizer, items) == 1 / 3  # only the item whose answer is 1


def test_cloze_items_hold_the_true_next_sentence():
    rng = random.Random(1)
    texts = [
        "\n\n".join(" ".join(sentence(rng) for _ in range(5)) for _ in range(3)) for _ in range(6)
    ]
    items = cloze_task(texts, 20, n_choices=4, seed=0)
    assert len(items) == 20 and {len(i.choices) for i in items} == {4}
    for item in items:
        truth = item.choices[item.answer].strip()
        assert any(
            item.context.split(". ")[-1].rstrip(".") + ". " + truth in " ".join(t.split())
            for t in texts
        )
