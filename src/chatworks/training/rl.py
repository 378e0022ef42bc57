"""Reinforcement learning with verifiable rewards, as nanochat's `chat_rl` does it.

Each step takes a few questions whose answers code can check (`tasks.py`), samples a group of
answers per question from the current weights (`rollout.py`), scores them (reward 1 for a
correct answer, else 0), and takes one policy-gradient step:
- the advantage of an answer is its reward minus its group's mean reward: no value network,
  no division by the group's standard deviation (nanochat; "Dr. GRPO", Liu et al. 2025, finds
  the division biases towards too easy and too hard questions);
- the loss is -sum(advantage x log p(token)) over every sampled answer token, divided by the
  number of those tokens in the step (token-level normalisation, as in nanochat and DAPO), so
  a long answer weighs per token what a short one does;
- on-policy, one step per batch of samples, so no importance ratio, clipping or KL penalty is
  needed (nanochat drops them too).
Answers whose group all scored alike carry no advantage and are left out of the backward pass
(they would add exactly zero). Every `eval_every` steps and at the end: pass@1 (greedy) and
pass@k (any of k samples at temperature 1) on held-out questions.
Does not cover: PPO-style ratios and clipping for several steps per batch, a reference-model
KL term, learned reward models, multi-turn tool use.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from chatworks.engine.sampling import SamplingParams
from chatworks.model import load_pretrained
from chatworks.model.adapters import AdapterSpec
from chatworks.model.llama import Llama
from chatworks.model.tokenizer import Tokenizer
from chatworks.training.ddp import World
from chatworks.training.presets import Preset
from chatworks.training.pretrain import Loop, Objective
from chatworks.training.rollout import generate
from chatworks.training.sft import collate, fine_tuning_rates, prepare_adapter
from chatworks.training.tasks import Task, make_tasks
from chatworks.training.tracking import Tracker


def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """Reward minus its group's mean; `rewards` is [groups, samples]."""
    return rewards - rewards.mean(dim=1, keepdim=True)


def policy_gradient_loss(
    logits: torch.Tensor, targets: torch.Tensor, advantages: torch.Tensor, total_tokens: int
) -> torch.Tensor:
    """-sum(advantage x log p(sampled token)) / `total_tokens`.

    logits [rows, T, V]; targets [rows, T] (-1 where the token is not a sampled answer token);
    advantages [rows]. `total_tokens` counts the answer tokens of the whole step, so micro-batches
    and skipped rows do not change a token's weight."""
    logp = F.log_softmax(logits.float(), dim=-1)
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    weights = advantages.unsqueeze(1) * (targets >= 0)
    return -(weights * picked).sum() / max(total_tokens, 1)


def pass_at_k(correct: Sequence[Sequence[bool]]) -> float:
    """Share of questions with at least one correct answer among their samples."""
    return sum(any(c) for c in correct) / max(1, len(correct))


def _objective() -> Objective:
    def loss(model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, dict]:
        x, y, advantages, total_tokens, n_micro, numbers = batch
        logits = model(x.to(device))
        # The loop divides each micro-batch's loss by their number: undo it, the normaliser is
        # already the step's token count.
        value = policy_gradient_loss(logits, y.to(device), advantages.to(device), total_tokens)
        return value * n_micro, numbers

    return Objective(loss, lambda batch: int((batch[1] >= 0).sum()))


def prompt_ids(tokenizer: Tokenizer, task: Task) -> list[int]:
    return tokenizer.encode(tokenizer.apply_chat_template(task.messages, True))


def evaluate(
    model: Llama, tokenizer: Tokenizer, tasks: Sequence[Task], k: int, max_tokens: int, seed: int
) -> dict[str, float]:
    """pass@1 (greedy) and pass@k (any of k samples at temperature 1) over `tasks`."""
    model.eval()
    stop = tokenizer.eos_token_ids
    prompts = [prompt_ids(tokenizer, t) for t in tasks]
    greedy = SamplingParams(max_tokens=max_tokens, temperature=0, stop_token_ids=stop)
    answers = generate(model, prompts, [greedy] * len(prompts))
    first = [t.correct(tokenizer.decode(a)) for t, a in zip(tasks, answers, strict=True)]
    sampled = [
        SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=seed + i, stop_token_ids=stop)
        for i in range(len(prompts) * k)
    ]
    many = generate(model, [p for p in prompts for _ in range(k)], sampled)
    correct = [
        [tasks[q].correct(tokenizer.decode(a)) for a in many[q * k : (q + 1) * k]]
        for q in range(len(tasks))
    ]
    # MLflow allows no "@" in metric names: pass@k is logged as pass_at_k.
    return {"pass_at_1": sum(first) / len(first), f"pass_at_{k}": pass_at_k(correct)}


def rl(
    preset: Preset,
    base: str | Path,
    out_dir: str | Path,
    task: str = "arithmetic",
    steps: int = 20,
    questions: int = 4,
    samples: int = 8,
    max_tokens: int = 48,
    temperature: float = 1.0,
    eval_questions: int = 48,
    k: int = 8,
    world: World = World(),
    tracker: Tracker | None = None,
    log: Callable[[str], None] = print,
    adapter: AdapterSpec | None = None,
) -> list[float]:
    """`steps` policy-gradient steps of `questions` x `samples` answers on `task`."""
    if world.size > 1:
        raise ValueError("rl runs in one process")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_pretrained(base)
    meta: dict[str, Any] = {"base": str(base), "task": task}
    if adapter is not None:
        adapter, _ = prepare_adapter(model, adapter, base)
    model = model.to(world.device)
    train = make_tasks([task], steps * questions, preset.seed)
    seen = {str(t.messages) for t in train}  # held-out questions are ones training never asks
    held_out = [t for t in make_tasks([task], 4 * eval_questions, preset.seed + 1)
                if str(t.messages) not in seen][:eval_questions]  # fmt: skip
    stop = tokenizer.eos_token_ids
    pad = tokenizer.pad_token_id or 0

    def batches(step: int, cursor: int) -> tuple[list[Any], int]:
        group = train[cursor : cursor + questions]
        prompts = [prompt_ids(tokenizer, t) for t in group for _ in range(samples)]
        params = [
            SamplingParams(max_tokens=max_tokens, temperature=temperature,
                           seed=random.Random(f"{preset.seed}/{step}/{i}").getrandbits(63),
                           stop_token_ids=stop)
            for i in range(len(prompts))
        ]  # fmt: skip
        model.eval()
        answers = generate(model, prompts, params)
        rewards = torch.tensor(
            [float(group[i // samples].correct(tokenizer.decode(a))) for i, a in enumerate(answers)]
        ).view(len(group), samples)
        advantages = group_advantages(rewards).flatten()
        rows = []
        for prompt, answer, advantage in zip(prompts, answers, advantages.tolist(), strict=True):
            # The stop token was sampled too (unless the answer hit max_tokens): it is trained.
            tokens = answer + ([stop[0]] if len(answer) < max_tokens and stop else [])
            ids = prompt + tokens
            targets = [-1] * (len(prompt) - 1) + tokens
            rows.append((torch.tensor(ids[:-1]), torch.tensor(targets), advantage))
        total = sum(int((y >= 0).sum()) for _, y, _ in rows)
        useful = [r for r in rows if r[2] != 0] or rows[:1]  # all alike: one row, zero advantage
        chunks = [useful[i : i + preset.device_batch]
                  for i in range(0, len(useful), preset.device_batch)]  # fmt: skip
        numbers = {"reward": float(rewards.mean()), "groups_with_signal":
                   float((rewards.std(dim=1) > 0).float().mean())}  # fmt: skip
        micro = []
        for chunk in chunks:
            x, y = collate([(r[0], r[1]) for r in chunk], pad)
            adv = torch.tensor([r[2] for r in chunk])
            micro.append((x, y, adv, total, len(chunks), numbers))
        model.train()
        return micro, cursor + questions

    def on_eval(step: int) -> dict[str, float]:
        return evaluate(model, tokenizer, held_out, k, max_tokens, preset.seed + 7)

    before_path = out / "before.json"  # the starting point, measured once before any step
    if not before_path.exists():
        before_path.write_text(json.dumps(on_eval(0)))
    meta["before"] = json.loads(before_path.read_text())
    log(f"rl before training: {meta['before']}")
    preset, rates = fine_tuning_rates(preset, base, adapter is not None)
    loop = Loop(
        preset.override(warmup_steps=min(preset.warmup_steps, 2)), model, tokenizer, out, world,
        tracker or Tracker(), "rl", steps, learning_rates=rates, meta=meta, on_eval=on_eval,
        objective=_objective(), adapter=adapter,
    )  # fmt: skip
    return loop.run(batches, 0, log=log)
