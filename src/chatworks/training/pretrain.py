"""Pretraining: next-token prediction on the token shards, with exact resume.

Covers: weight init, the optimizer step shared with SFT (gradient accumulation, all-reduce,
clipping, schedule), periodic validation loss / bits per byte and samples, checkpoints that
resume to the same losses bit for bit on CPU in float32, bf16 autocast on CUDA, torch.compile
as an option, and metrics to `metrics.jsonl` and the tracker.
Does not cover: data preparation (`corpus.py`), chat fine-tuning (`sft.py`), reports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from chatworks.model import checkpoint_io
from chatworks.model.adapters import AdapterSpec
from chatworks.model.llama import Llama
from chatworks.model.tokenizer import Tokenizer
from chatworks.training import checkpoint as ckpt
from chatworks.training.data import TokenStream
from chatworks.training.ddp import World, all_reduce_grads, all_reduce_mean
from chatworks.training.evaluate import bits_per_byte, samples
from chatworks.training.optim import build_optimizers, lr_multiplier, set_lr
from chatworks.training.presets import Preset
from chatworks.training.tokenizer_train import load_tokenizer, token_bytes
from chatworks.training.tracking import Tracker

SAMPLE_PROMPTS = ("The", "In Python, a list is", "To open a file,")
Batch = tuple[torch.Tensor, torch.Tensor]  # inputs, targets (-1: no loss)


def init_weights(model: Llama, seed: int) -> None:
    """Seeded init: N(0, 1/fan_in) matrices; zero residual outputs and head.

    Zeroing each block's output projections makes every block start as the identity, so depth
    does not blow up the residual stream at init (as in nanochat and "ReZero", Bachlechner et
    al. 2020); a zero head starts the loss at exactly ln(vocab), uniform predictions.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")) or name.startswith("lm_head"):
                p.zero_()
            elif name.startswith("embed_tokens"):
                p.normal_(0.0, 1.0, generator=generator)
            elif p.ndim == 2:
                p.normal_(0.0, p.shape[1] ** -0.5, generator=generator)
            else:
                p.fill_(1.0)


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 matmuls on CUDA (weights and optimizer stay float32); CPU trains in float32."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-1)


@dataclasses.dataclass(frozen=True)
class Objective:
    """What a training step minimises, for one micro-batch of any shape.

    `loss(model, batch, device)` returns the loss and the numbers to log beside it (DPO's reward
    accuracy, RL's mean reward); `tokens(batch)` counts the tokens it trained on, for tokens/s.
    Pretraining and SFT use `NEXT_TOKEN`; `dpo.py` and `rl.py` bring their own.
    """

    loss: Callable[[nn.Module, Any, torch.device], tuple[torch.Tensor, dict[str, float]]]
    tokens: Callable[[Any], int]


def _next_token_loss(
    model: nn.Module, batch: Batch, device: torch.device
) -> tuple[torch.Tensor, dict[str, float]]:
    x, y = batch
    return loss_fn(model, x.to(device), y.to(device)), {}


NEXT_TOKEN = Objective(_next_token_loss, lambda batch: int((batch[1] >= 0).sum()))


def optimizer_step(
    model: nn.Module,
    params: list[nn.Parameter],
    optimizers: list[torch.optim.Optimizer],
    micro_batches: Sequence[Any],
    grad_clip: float,
    world: World,
    objective: Objective = NEXT_TOKEN,
) -> tuple[float, dict[str, float]]:
    """Accumulate gradients over micro-batches, average across processes, clip, step.

    Returns the step's mean loss over all micro-batches and processes, and the means of the
    objective's other numbers (over micro-batches, then processes).
    """
    total = torch.zeros((), device=world.device)
    logged: dict[str, float] = {}
    for batch in micro_batches:
        with autocast(world.device):
            loss, numbers = objective.loss(model, batch, world.device)
        (loss / len(micro_batches)).backward()
        total += loss.detach()
        for key, value in numbers.items():
            logged[key] = logged.get(key, 0.0) + value / len(micro_batches)
    all_reduce_grads(params, world)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    for opt in optimizers:
        opt.step()
    model.zero_grad(set_to_none=True)
    if logged:
        keys = sorted(logged)
        means = all_reduce_mean(torch.tensor([logged[k] for k in keys], device=world.device), world)
        logged = dict(zip(keys, means.tolist(), strict=True))
    return all_reduce_mean(total / len(micro_batches), world).item(), logged


class MetricsLog:
    """Append-only `metrics.jsonl`; on resume, lines past the checkpoint's step are dropped."""

    def __init__(self, path: Path, resume_step: int, tracker: Tracker, enabled: bool):
        self.path, self.tracker, self.enabled = path, tracker, enabled
        if enabled:
            kept = (
                [r for r in read_metrics(path) if r["step"] <= resume_step] if resume_step else []
            )
            path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def log(self, step: int, **metrics: float) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        self.tracker.log_metrics(metrics, step)


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@dataclasses.dataclass
class Loop:
    """What a training loop needs besides its batches: shared by pretraining and SFT."""

    preset: Preset
    model: Llama
    tokenizer: Tokenizer
    out_dir: Path
    world: World
    tracker: Tracker
    stage: str  # "base" or "sft"
    total_steps: int
    learning_rates: dict[str, float] | None = None  # default: the preset's pretraining rates
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)  # recorded in checkpoints
    on_eval: Callable[[int], dict[str, float]] | None = None
    objective: Objective = NEXT_TOKEN
    # With an adapter, checkpoints hold only its weights (plus the base's name): `adapters.py`.
    adapter: AdapterSpec | None = None

    def run(
        self, batches: Callable[[int, Any], tuple[list[Batch], Any]], position: Any,
        stop_after: int | None = None, log: Callable[[str], None] = print,
    ) -> list[float]:  # fmt: skip
        """Train from the last checkpoint in `out_dir` (or from scratch) to `total_steps`.

        `batches(step, position)` returns the step's micro-batches and the next data position.
        `stop_after` ends the run early, after checkpointing that step (train in chunks).
        Returns this run's losses.
        """
        preset, world = self.preset, self.world
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizers = build_optimizers(self.model, preset, self.learning_rates)
        model: nn.Module = torch.compile(self.model) if preset.compile else self.model
        step = 0
        checkpoint_dir = self.out_dir / "checkpoint"
        if ckpt.has_state(checkpoint_dir):
            step, position = self._restore(checkpoint_dir, optimizers)
        metrics = MetricsLog(
            self.out_dir / "metrics.jsonl", step, self.tracker, enabled=world.is_main
        )
        last = self.total_steps if stop_after is None else min(stop_after, self.total_steps)
        losses: list[float] = []
        tokens_done, timed = 0, 0.0
        while step < last:
            multiplier = lr_multiplier(step, dataclasses.replace(preset, steps=self.total_steps))
            set_lr(optimizers, multiplier)
            started = time.perf_counter()
            micro_batches, position = batches(step, position)
            self.model.train()
            loss, numbers = optimizer_step(
                model, params, optimizers, micro_batches, preset.grad_clip, world, self.objective
            )
            elapsed = time.perf_counter() - started
            tokens = sum(self.objective.tokens(b) for b in micro_batches) * world.size
            if step > 0:  # the first step pays for allocation (and compilation): not timed
                tokens_done, timed = tokens_done + tokens, timed + elapsed
            losses.append(loss)
            step += 1
            metrics.log(step, loss=loss, lr_multiplier=multiplier, tokens_per_s=tokens / elapsed,
                        step_s=elapsed, **numbers)  # fmt: skip
            if step % preset.eval_every == 0 or step == last:
                if self.on_eval is not None:
                    self.model.eval()
                    metrics.log(step, **self.on_eval(step))
                self._save(checkpoint_dir, step, position, optimizers)
                rate = tokens_done / max(timed, 1e-9)
                log(f"{self.stage} step {step}/{self.total_steps} loss {loss:.4f} "
                    f"lr x{multiplier:.2f} {rate:,.0f} tok/s")  # fmt: skip
        self.model.eval()
        return losses

    def _save(
        self, path: Path, step: int, position: Any, optimizers: list[torch.optim.Optimizer]
    ) -> None:
        if not self.world.is_main:
            return
        state = {
            "step": step,
            "position": position,
            "optimizers": [o.state_dict() for o in optimizers],
            "rng": torch.get_rng_state(),
        }
        meta = {
            **self.meta, "stage": self.stage, "step": step,
            "preset": dataclasses.asdict(self.preset),
        }  # fmt: skip
        ckpt.save_checkpoint(path, self.model, self.tokenizer, meta, state, self.adapter)

    def _restore(self, path: Path, optimizers: list[torch.optim.Optimizer]) -> tuple[int, Any]:
        if self.adapter is None:
            self.model.load_state_dict(checkpoint_io.read_state_dict(path))
        else:
            from chatworks.training.lora import load_lora_weights

            load_lora_weights(self.model, path)
        state = ckpt.load_state(path)
        for opt, saved in zip(optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(saved)
        torch.set_rng_state(state["rng"])
        return state["step"], state["position"]


def pretrain(
    preset: Preset,
    data_dir: str | Path,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    world: World = World(),
    tracker: Tracker | None = None,
    stop_after: int | None = None,
    log: Callable[[str], None] = print,
) -> list[float]:
    """Train a fresh model of `preset`'s shape; resumes from `out_dir/checkpoint` if present."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(tokenizer_dir)
    cfg = preset.model_config(
        tokenizer.vocab_size, tokenizer.bos_token_id or 0, tokenizer.eos_token_ids
    )
    torch.manual_seed(preset.seed)
    model = Llama(cfg).to(world.device)
    init_weights(model, preset.seed)
    train = TokenStream(data_dir, "train", shuffle_seed=preset.seed)
    val = TokenStream(data_dir, "val")
    accumulation = preset.accumulation_steps(world.size)

    def batches(step: int, cursor: int) -> tuple[list[Batch], int]:
        micro = []
        for _ in range(accumulation):
            x, y, cursor = train.batch(
                cursor, preset.device_batch, preset.seq_len, world.rank, world.size
            )
            micro.append((x, y))
        return micro, cursor

    loop = Loop(
        preset, model, tokenizer, out, world, tracker or Tracker(), "base",
        preset.steps, on_eval=_evaluator(model, tokenizer, val, preset, world, out),
    )  # fmt: skip
    return loop.run(batches, 0, stop_after, log)


def _evaluator(
    model: Llama, tokenizer: Tokenizer, val: TokenStream, preset: Preset, world: World, out: Path
) -> Callable[[int], dict[str, float]]:
    sizes = torch.tensor(token_bytes(tokenizer))

    def evaluate(step: int) -> dict[str, float]:
        loss, bpb = bits_per_byte(
            model, val, sizes, preset.seq_len, preset.device_batch, preset.eval_tokens, world
        )
        if world.is_main:
            with (out / "samples.md").open("a") as f:
                f.write(f"## step {step}\n\n")
                for text in samples(model, tokenizer, SAMPLE_PROMPTS, max_new=32):
                    f.write(f"- {text!r}\n")
                f.write("\n")
        return {"val_loss": loss, "val_bpb": bpb}

    return evaluate
