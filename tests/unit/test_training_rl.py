"""RL with verifiable rewards: the reward checks, the advantage and loss arithmetic, pass@k,
and the sampler the rollouts use."""

from __future__ import annotations

import random
import re

import pytest
import torch

from chatworks.engine.sampling import SamplingParams
from chatworks.model import load_pretrained
from chatworks.training import tasks
from chatworks.training.evaluate import greedy
from chatworks.training.rl import evaluate, group_advantages, pass_at_k, policy_gradient_loss
from chatworks.training.rollout import generate
from tests.unit.training_corpus import micro_checkpoint, one_thread

pytestmark = pytest.mark.usefixtures(one_thread.__name__)


def test_arithmetic_reward_reads_the_last_number():
    task = tasks.arithmetic(random.Random(0))
    answer = task.reference
    assert task.correct(f"First 2 + 3, so the answer is {answer}.")
    assert not task.correct(f"{answer} is wrong, it is {int(answer) + 1}")
    assert not task.correct("no number at all")
    assert tasks.last_number("It costs 1,250 coins.") == 1250


def test_grounded_checks_span_citation_and_refusal():
    rng = random.Random(5)
    answerable = tasks.grounded(rng, answerable=True)
    assert answerable.correct(answerable.reference)
    without_marker = answerable.reference.rsplit(" [", 1)[0]
    assert answerable.check(without_marker)["cites_its_passage"] is False
    assert answerable.score(without_marker) == 0.75
    assert not answerable.correct("I don't know based on the provided documents.")
    unanswerable = tasks.grounded(rng, answerable=False)
    assert unanswerable.correct("I don't know based on the provided documents.")
    assert not unanswerable.correct("It opened in 1950 [1].")


def test_advantage_is_reward_minus_group_mean():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    expected = [[0.5, -0.5, -0.5, 0.5], [0.0] * 4, [0.75, -0.25, -0.25, -0.25]]
    assert group_advantages(rewards).tolist() == expected


def test_loss_is_advantage_weighted_log_probs_over_all_answer_tokens():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 7)
    targets = torch.tensor([[-1, 2, 5, -1], [-1, -1, 1, 1], [-1, 3, -1, -1]])
    advantages = torch.tensor([0.5, -0.25, 1.0])
    logp = logits.log_softmax(-1)
    by_hand = (
        -(
            0.5 * (logp[0, 1, 2] + logp[0, 2, 5])
            - 0.25 * (logp[1, 2, 1] + logp[1, 3, 1])
            + 1.0 * logp[2, 1, 3]
        )
        / 5
    )
    assert float(policy_gradient_loss(logits, targets, advantages, 5)) == pytest.approx(
        float(by_hand), rel=1e-6
    )
    # Token-level normalisation: micro-batches over the same step's token count add up to it.
    split = policy_gradient_loss(logits[:2], targets[:2], advantages[:2], 5) + (
        policy_gradient_loss(logits[2:], targets[2:], advantages[2:], 5)
    )
    assert float(split) == pytest.approx(float(by_hand), rel=1e-6)
    # Descending it raises the log-probability of a positively rewarded answer.
    logits.requires_grad_(True)
    policy_gradient_loss(logits, targets, advantages, 5).backward()
    assert logits.grad[2, 1, 3] < 0 and logits.grad[1, 2, 1] > 0


def test_pass_at_k():
    assert pass_at_k([[False, True], [False, False], [True, True], [False, False]]) == 0.5


def test_batched_sampler_matches_one_by_one(tmp_path):
    model, tokenizer = load_pretrained(micro_checkpoint(tmp_path))
    prompts = [tokenizer.encode(t) for t in ("The cat", "A small robot keeps the", "Story")]
    stop = tokenizer.eos_token_ids
    greedy_params = SamplingParams(max_tokens=10, temperature=0, stop_token_ids=stop)
    batched = generate(model, prompts, [greedy_params] * 3)
    for prompt, answer in zip(prompts, batched, strict=True):
        assert answer == greedy(model, prompt, 10, stop)
    # A group of samples of one prompt shares its prefill; each keeps its own seeded draw.
    seeded = [SamplingParams(max_tokens=10, temperature=1.0, seed=s) for s in (1, 2, 3)]
    group = generate(model, [prompts[1]] * 3, seeded)
    alone = [generate(model, [prompts[1]], [p])[0] for p in seeded]
    assert group == alone and len({tuple(g) for g in group}) > 1


def test_evaluation_numbers_are_rates_under_names_mlflow_takes(tmp_path):
    model, tokenizer = load_pretrained(micro_checkpoint(tmp_path))
    short = [tasks.Task("toy", [{"role": "user", "content": "Hi"}], lambda a: {"ok": "a" in a})]
    numbers = evaluate(model, tokenizer, short * 2, k=2, max_tokens=4, seed=0)
    assert set(numbers) == {"pass_at_1", "pass_at_2"}
    assert all(re.fullmatch(r"[\w\-./ :]+", name) for name in numbers)  # MLflow's rule: no "@"
    assert all(0 <= v <= 1 for v in numbers.values())
