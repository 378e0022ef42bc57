"""Pretraining throughput and model-FLOPs utilization (MFU) of a preset, against this machine.

    .venv/bin/python bench/train.py [--preset tiny] [--steps 8] [--repeats 3] [--threads 2]
                                    [--vocab-size 32768]   # nanochat's CPU shape: d4, 32k vocab
                                    [--optimizer adamw]    # the preset's is the default
                                    [--compile]            # torch.compile the model

MFU = 6 x (matrix parameters incl. lm_head) x tokens/s / (fp32 FLOP/s of a 2048x2048 matmul
measured just before, in this same run, with the same threads): the share of the machine's
dense-matmul rate that training steps (forward, backward and optimizer step, accumulation
included) turn into model FLOPs. Data are random tokens (the loader's cost is an index into
a memory map: not what this measures).
Prints min and median over repeats, and the load average, since these machines are shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from chatworks.model.llama import Llama
from chatworks.training.ddp import World
from chatworks.training.optim import build_optimizers
from chatworks.training.presets import Preset, get_preset
from chatworks.training.pretrain import init_weights, optimizer_step

MATMUL = 2048


def matmul_flops() -> float:
    """fp32 FLOP/s of a 2048x2048 matmul (best of three timings of ten)."""
    a, b = torch.randn(MATMUL, MATMUL), torch.randn(MATMUL, MATMUL)
    a @ b  # warm up
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(10):
            a @ b
        best = max(best, 2 * MATMUL**3 * 10 / (time.perf_counter() - started))
    return best


def matrix_params(model: Llama) -> int:
    """Parameters that cost 2 FLOPs per token forward: every matrix but the embedding lookup."""
    return sum(p.numel() for n, p in model.named_parameters() if p.ndim == 2 and "embed" not in n)


def training_rate(preset: Preset, steps: int) -> tuple[float, int]:
    """Tokens/s over `steps` optimizer steps after one warm-up step (which also pays for
    `torch.compile` when the preset asks for it); and matrix params."""
    model = Llama(preset.model_config(preset.vocab_size, 0, (1,)))
    init_weights(model, preset.seed)
    optimizers = build_optimizers(model, preset)
    params = list(model.parameters())
    accumulation = preset.accumulation_steps(1)
    shape = (preset.device_batch, preset.seq_len)
    micro = [
        (torch.randint(preset.vocab_size, shape), torch.randint(preset.vocab_size, shape))
        for _ in range(accumulation)
    ]
    model.train()
    step_model = torch.compile(model) if preset.compile else model
    optimizer_step(step_model, params, optimizers, micro, preset.grad_clip, World())
    started = time.perf_counter()
    for _ in range(steps):
        optimizer_step(step_model, params, optimizers, micro, preset.grad_clip, World())
    return preset.batch_tokens * steps / (time.perf_counter() - started), matrix_params(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--vocab-size", type=int, help="override the preset's vocabulary")
    parser.add_argument("--optimizer", choices=["adamw", "muon"], help="override the preset's")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = parser.parse_args()
    preset = get_preset(args.preset).override(
        vocab_size=args.vocab_size, optimizer=args.optimizer, compile=args.compile or None
    )
    torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()}, torch threads {args.threads}")
    # Baseline and training alternate, so a change in the machine's load hits both alike.
    peaks, rates, mfus = [], [], []
    for _ in range(args.repeats):
        peaks.append(matmul_flops())
        rate, n_matrix = training_rate(preset, args.steps)
        rates.append(rate)
        mfus.append(6 * n_matrix * rate / peaks[-1])
    print(f"preset {args.preset}, vocab {preset.vocab_size}, {preset.optimizer}: "
          f"{n_matrix / 1e6:.2f}M matrix params, "
          f"{6 * n_matrix / 1e6:.1f} MFLOPs/token")  # fmt: skip
    for label, pick in (("min", min), ("median", statistics.median)):
        print(f"{label:>6}: matmul {pick(peaks) / 1e9:.1f} GFLOP/s, training "
              f"{pick(rates):,.0f} tokens/s, MFU {100 * pick(mfus):.0f}%")  # fmt: skip
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
