"""Optimizers and the learning-rate schedule.

Covers: parameter groups (embedding, lm_head, hidden matrices, norms) with their own rates;
AdamW for all of them, or Muon for the hidden matrices (an option); warmup then cosine or
linear decay. Does not cover: the training loop (`pretrain.py`), or ZeRO-style sharding of
optimizer state across processes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from chatworks.model.llama import Llama
from chatworks.training.presets import Preset


def param_groups(model: Llama, lrs: dict[str, float]) -> dict[str, list[nn.Parameter]]:
    """Every trainable parameter in exactly one named group (tied weights count once; frozen
    ones, such as the base under a LoRA adapter, in none)."""
    groups: dict[str, list[nn.Parameter]] = {name: [] for name in lrs}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if id(p) in seen or not p.requires_grad:
            continue
        seen.add(id(p))
        if name.startswith("embed_tokens"):
            groups["embed"].append(p)
        elif name.startswith("lm_head"):
            groups["head"].append(p)
        elif p.ndim == 2:
            groups["matrix"].append(p)
        else:
            groups["norm"].append(p)
    return groups


def build_optimizers(
    model: Llama, preset: Preset, lrs: dict[str, float] | None = None
) -> list[torch.optim.Optimizer]:
    """One AdamW over all groups, or AdamW plus Muon for the hidden matrices.

    `lrs` are the peak rates per group (default: the preset's pretraining rates). Each param
    group keeps its peak rate in `initial_lr`; `set_lr` scales it every step.
    """
    lrs = lrs or preset.learning_rates()
    groups = param_groups(model, lrs)
    adam_names = [n for n in groups if n != "matrix" or preset.optimizer == "adamw"]
    adam_groups = [
        {
            "params": groups[n],
            "lr": lrs[n],
            "initial_lr": lrs[n],
            # Decay only matrices: decaying gains and embeddings hurts (Loshchilov & Hutter 2019).
            "weight_decay": preset.weight_decay if n == "matrix" else 0.0,
        }
        for n in adam_names
        if groups[n]
    ]
    # beta2 = 0.95 rather than 0.999: steadier for short runs with large batches (GPT-3, Brown
    # et al. 2020, sec. B); fused/foreach kernels are left to torch's default choice.
    optimizers: list[torch.optim.Optimizer] = [
        torch.optim.AdamW(adam_groups, betas=(0.9, 0.95), eps=1e-10)
    ]
    if preset.optimizer == "muon":
        optimizers.append(Muon(groups["matrix"], lr=lrs["matrix"]))
    return optimizers


def lr_multiplier(step: int, preset: Preset) -> float:
    """Linear warmup, then decay to `final_lr_frac` of the peak at the last step."""
    if step < preset.warmup_steps:
        return (step + 1) / preset.warmup_steps
    progress = (step - preset.warmup_steps) / max(1, preset.steps - preset.warmup_steps)
    progress = min(progress, 1.0)
    # Cosine: SGDR (Loshchilov & Hutter 2017). Linear to zero, the default, does as well or
    # better at a fixed budget (Defazio et al. 2023, "When, Why and How Much?").
    cosine = preset.decay == "cosine"
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if cosine else 1 - progress
    return preset.final_lr_frac + (1 - preset.final_lr_frac) * shape


def set_lr(optimizers: list[torch.optim.Optimizer], multiplier: float) -> None:
    """Scale every group's peak rate."""
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * multiplier


def newton_schulz(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """The nearest semi-orthogonal matrix to each matrix in `g` (`[..., m, n]`), approximately:
    U V^T of its SVD.

    A quintic iteration with coefficients tuned to push singular values into ~[0.7, 1.2] fast
    rather than exactly to 1 (Jordan et al. 2024, "Muon"); that is enough for an update direction,
    so it runs in bfloat16 as Muon's authors do: 2.7x faster than float32 on this CPU.
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.bfloat16()
    x = x / (torch.linalg.matrix_norm(x, keepdim=True) + 1e-7)
    transposed = x.shape[-2] > x.shape[-1]
    if transposed:  # iterate on the smaller Gram matrix
        x = x.mT
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.mT if transposed else x).to(g.dtype)


class Muon(torch.optim.Optimizer):
    """Momentum, then orthogonalise the update of each 2-D matrix (Jordan et al. 2024).

    Only for hidden matrices: embeddings and the output head stay with AdamW, as in the paper.
    Matrices of one shape are orthogonalised together, in one batched iteration: small matrices
    alone leave the CPU's matmul units idle.
    """

    def __init__(self, params: list[nn.Parameter], lr: float, momentum: float = 0.95):
        super().__init__(params, {"lr": lr, "initial_lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        for group in self.param_groups:
            by_shape: dict[torch.Size, list[nn.Parameter]] = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_shape.setdefault(p.shape, []).append(p)
            for shape, params in by_shape.items():
                updates = []
                for p in params:
                    buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                    buf.lerp_(p.grad, 1 - group["momentum"])
                    updates.append(p.grad.lerp(buf, group["momentum"]))  # Nesterov
                orthogonal = newton_schulz(torch.stack(updates))
                # Scale so tall and wide matrices move their outputs by similar RMS amounts.
                scale = max(1.0, shape[0] / shape[1]) ** 0.5
                for p, update in zip(params, orthogonal, strict=True):
                    p.add_(update, alpha=-group["lr"] * scale)
