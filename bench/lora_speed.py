"""Seconds per training step, full fine-tuning against LoRA ranks, interleaved in one process.

    .venv/bin/python bench/lora_speed.py [--ranks 4,16,64] [--rounds 4] [--batch 4]
        [--seq-len 256] [--threads 1] [--bf16-ranks 16]  # LoRA on a bfloat16 frozen base too

`bench/lora.py` runs each configuration in its own process, one after the other, so on a shared
machine their step times see different loads. Here every configuration is built from the same
SmolLM2 in one process and they take turns, one optimizer step each per round, on the same batch
of ShareGPT conversations, so a change of load hits all of them alike. Prints the median seconds
per step of each and its ratio to full fine-tuning (the first round is not counted: allocation).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

# Python puts this script's folder first on the path, where bench/kernels.py would stand in for
# the `kernels` package that transformers (imported by peft) probes for.
sys.path.remove(str(Path(__file__).resolve().parent))

import torch

from chatworks.model import load_pretrained
from chatworks.model.adapters import AdapterSpec
from chatworks.training.ddp import World
from chatworks.training.lora import add_lora
from chatworks.training.optim import build_optimizers
from chatworks.training.presets import get_preset
from chatworks.training.pretrain import optimizer_step
from chatworks.training.sft import build_examples, collate, load_conversations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranks", default="4,16,64")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bf16-ranks", default="")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    preset = get_preset("tiny").override(optimizer="adamw")
    configs = {"full": None} | {f"lora r{r}": (int(r), "float32") for r in args.ranks.split(",")}
    configs |= {
        f"lora r{r} bf16 base": (int(r), "bfloat16") for r in args.bf16_ranks.split(",") if r
    }
    models = {}
    for name, lora in configs.items():
        model, tokenizer = load_pretrained()
        if lora is not None:
            add_lora(model, AdapterSpec(rank=lora[0], base_dtype=lora[1]))
        params = [p for p in model.parameters() if p.requires_grad]
        rates = dict.fromkeys(preset.learning_rates(), 1e-5)
        models[name] = (model.train(), params, build_optimizers(model, preset, rates))
    chats = load_conversations(None, args.batch, 3 * args.seq_len)
    batch = collate(build_examples(tokenizer, chats, args.seq_len), tokenizer.pad_token_id or 0)
    times: dict[str, list[float]] = {name: [] for name in configs}
    for round_ in range(args.rounds + 1):
        for name, (model, params, optimizers) in models.items():
            started = time.perf_counter()
            optimizer_step(model, params, optimizers, [batch], 1.0, World())
            if round_:
                times[name].append(time.perf_counter() - started)
    tokens = int((batch[1] >= 0).sum())
    print(f"load average {os.getloadavg()[0]:.1f}; {args.batch} conversations, {tokens} answer "
          f"tokens, {batch[0].numel()} tokens a step; {args.threads} thread(s)")  # fmt: skip
    full = statistics.median(times["full"])
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name}: {median:.2f} s/step ({median / full:.2f}x full), "
              f"min {min(samples):.2f}, max {max(samples):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
