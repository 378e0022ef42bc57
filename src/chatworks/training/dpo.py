"""Preference tuning with DPO (Rafailov et al. 2023, "Direct Preference Optimization").

Covers: pairs from JSONL (`prompt`: a string or OpenAI-style messages; `chosen`, `rejected`:
answers), the sigmoid loss with `beta`, reward accuracy and margins on the training batches and
on held-out pairs, and a training run that resumes like SFT, whole or through a LoRA adapter.

The reference model's log-probabilities are computed once, before the first step, and kept in
`reference.pt` beside the checkpoint: only the policy is ever in memory, where TRL's default
holds a second, frozen copy of the model for the whole run (its users' top complaint). That
needs a fixed set of pairs, which offline DPO has anyway. Does not cover: other losses (IPO,
hinge, KTO), or building pairs (`preferences.py` makes them from the model's own samples).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from chatworks.model import load_pretrained
from chatworks.model.adapters import AdapterSpec
from chatworks.model.tokenizer import Tokenizer
from chatworks.training.ddp import World
from chatworks.training.presets import Preset
from chatworks.training.pretrain import Loop, Objective
from chatworks.training.sft import collate, fine_tuning_rates, prepare_adapter, render
from chatworks.training.tracking import Tracker

REFERENCE = "reference.pt"
# SmolLM2-Instruct's own DPO used 1e-6 for two epochs of ~60k pairs; a few hundred pairs move
# the policy too little at that rate in one epoch, so the default is five times it.
DPO_LR = 5e-6


@dataclass(frozen=True)
class Pair:
    prompt: list[dict[str, str]]  # the conversation up to the answer
    chosen: str
    rejected: str


def read_pairs(path: str | Path) -> list[Pair]:
    pairs = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            prompt = row["prompt"]
            if isinstance(prompt, str):
                prompt = [{"role": "user", "content": prompt}]
            pairs.append(Pair(prompt, row["chosen"], row["rejected"]))
    return pairs


def write_pairs(path: str | Path, pairs: Sequence[Pair], extra: Sequence[dict] = ()) -> None:
    """JSONL in `read_pairs`' format; `extra` adds fields per pair (why it was chosen)."""
    with Path(path).open("w", encoding="utf-8") as f:
        for i, pair in enumerate(pairs):
            row = {"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected}
            f.write(json.dumps({**row, **(extra[i] if extra else {})}) + "\n")


def encode(tokenizer: Tokenizer, pair: Pair, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets (-1: no loss) of the chosen and the rejected conversation, [2, T]:
    only the answer's tokens (and its end of turn) are scored, as in SFT."""
    rows = []
    for answer in (pair.chosen, pair.rejected):
        ids, mask = render(tokenizer, [*pair.prompt, {"role": "assistant", "content": answer}])
        ids, mask = ids[: seq_len + 1], mask[: seq_len + 1]
        targets = [t if m else -1 for t, m in zip(ids[1:], mask[1:], strict=True)]
        rows.append((torch.tensor(ids[:-1]), torch.tensor(targets)))
    return collate(rows, tokenizer.pad_token_id or 0)


def answer_logprobs(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum of log p(answer token) per row: [rows]."""
    logp = F.log_softmax(model(x), dim=-1)
    picked = logp.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * (y >= 0)).sum(-1)


def dpo_loss(
    policy: torch.Tensor, reference: torch.Tensor, beta: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """`policy`, `reference`: log-probs [pairs, 2] (chosen, rejected).

    The implicit reward of an answer is beta * log(policy / reference); the loss is
    -log sigmoid(reward chosen - reward rejected), averaged over pairs. At policy == reference
    every margin is 0 and the loss is exactly log 2.
    """
    rewards = beta * (policy - reference)
    margin = rewards[:, 0] - rewards[:, 1]
    loss = -F.logsigmoid(margin).mean()
    rewards, margin = rewards.detach(), margin.detach()
    numbers = {
        "reward_accuracy": float((margin > 0).float().mean()),
        "reward_margin": float(margin.mean()),
        "reward_chosen": float(rewards[:, 0].mean()),
        "reward_rejected": float(rewards[:, 1].mean()),
    }
    return loss, numbers


def _stack(encoded: Sequence[tuple[torch.Tensor, torch.Tensor]], pad: int) -> tuple[Any, Any]:
    """Several pairs' [2, T] rows into one padded [2 * pairs, T] batch (pair i: rows 2i, 2i+1)."""
    rows = [(x[r], y[r]) for x, y in encoded for r in range(2)]
    return collate(rows, pad)


@torch.no_grad()
def reference_logprobs(
    model: nn.Module, encoded: Sequence[tuple[torch.Tensor, torch.Tensor]], device: torch.device,
    pad: int, rows: int = 4,
) -> torch.Tensor:  # fmt: skip
    """Log-probs [pairs, 2] of every pair under `model` as it is now."""
    out = []
    for i in range(0, len(encoded), rows):
        x, y = _stack(encoded[i : i + rows], pad)
        out.append(answer_logprobs(model, x.to(device), y.to(device)).view(-1, 2).cpu())
    return torch.cat(out)


def objective(beta: float) -> Objective:
    def loss(model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, dict]:
        x, y, reference = batch
        policy = answer_logprobs(model, x.to(device), y.to(device)).view(-1, 2)
        return dpo_loss(policy, reference.to(device), beta)

    return Objective(loss, lambda batch: int((batch[1] >= 0).sum()))


def held_out_accuracy(
    model: nn.Module, encoded: Sequence[tuple[torch.Tensor, torch.Tensor]],
    reference: torch.Tensor, beta: float, device: torch.device, pad: int,
) -> dict[str, float]:  # fmt: skip
    policy = reference_logprobs(model, encoded, device, pad)
    _, numbers = dpo_loss(policy, reference, beta)
    return {f"val_{k}": v for k, v in numbers.items()}


def dpo(
    preset: Preset,
    base: str | Path,
    pairs: Sequence[Pair],
    out_dir: str | Path,
    beta: float = 0.1,
    epochs: float = 1.0,
    val_pairs: Sequence[Pair] = (),
    world: World = World(),
    tracker: Tracker | None = None,
    log: Callable[[str], None] = print,
    adapter: AdapterSpec | None = None,
) -> list[float]:
    """DPO on `pairs` from `base` for `epochs` passes (`preset.sft_batch` pairs a step,
    `preset.device_batch` per forward); held-out reward accuracy on `val_pairs` at each eval."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_pretrained(base)
    meta: dict[str, Any] = {"base": str(base), "beta": beta}
    if adapter is not None:
        adapter, meta["trainable_parameters"] = prepare_adapter(model, adapter, base)
    model = model.to(world.device)
    pad = tokenizer.pad_token_id or 0
    train = [encode(tokenizer, p, preset.seq_len) for p in pairs]
    val = [encode(tokenizer, p, preset.seq_len) for p in val_pairs]
    reference = _reference(out / REFERENCE, model, train, val, world.device, pad, log)
    order = list(range(len(train)))
    random.Random(preset.seed).shuffle(order)
    steps = max(1, round(epochs * len(train) / preset.sft_batch))
    per_rank = preset.sft_batch // world.size

    def batches(step: int, cursor: int) -> tuple[list[Any], int]:
        picked = [order[(cursor + i) % len(order)] for i in range(preset.sft_batch)]
        mine = picked[world.rank * per_rank : (world.rank + 1) * per_rank]
        micro = []
        for i in range(0, len(mine), preset.device_batch):
            chunk = mine[i : i + preset.device_batch]
            x, y = _stack([train[j] for j in chunk], pad)
            micro.append((x, y, reference["train"][chunk]))
        return micro, cursor + preset.sft_batch

    def evaluate(step: int) -> dict[str, float]:
        if not val:
            return {}
        return held_out_accuracy(model, val, reference["val"], beta, world.device, pad)

    preset, rates = fine_tuning_rates(preset, base, adapter is not None)
    # A tenth of the run warms up (the presets' 10-20 steps would be most of a short DPO run).
    preset = preset.override(warmup_steps=min(preset.warmup_steps, max(1, steps // 10)))
    loop = Loop(
        preset, model, tokenizer, out, world, tracker or Tracker(), "dpo", steps,
        learning_rates=rates, meta=meta, on_eval=evaluate, objective=objective(beta),
        adapter=adapter,
    )  # fmt: skip
    return loop.run(batches, 0, log=log)


def _reference(
    path: Path, model: nn.Module, train: Sequence[Any], val: Sequence[Any],
    device: torch.device, pad: int, log: Callable[[str], None],
) -> dict[str, torch.Tensor]:  # fmt: skip
    """The reference log-probs, computed before any step (kept, so a resumed run reuses them
    rather than scoring with weights that have already moved)."""
    if path.exists():
        return torch.load(path, weights_only=True)
    log(f"dpo: scoring {len(train)} + {len(val)} pairs with the reference model")
    model.eval()
    reference = {
        "train": reference_logprobs(model, train, device, pad),
        "val": reference_logprobs(model, val, device, pad) if val else torch.zeros(0, 2),
    }
    torch.save(reference, path)
    return reference
