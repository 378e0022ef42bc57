"""What serving an unmerged LoRA adapter beside the int4 base would cost per decode step.

    .venv/bin/python bench/adapter_overhead.py [--rank 16] [--rows 1,8] [--steps 30] [--threads 1]

The default model at the engine's int4 precision, eager (no compiled blocks), one decode step
of `rows` sequences over a 200-token cache, timed three ways in alternating rounds: the base
alone; the base plus a rank-R low-rank product (x A^T B^T) on every adapted linear layer for
all rows (a batch of adapter requests); and the base plus a per-row gather of two adapters (half
the rows each), which is what mixing adapters in one batch needs. Prints median ms per step and
the ratios to the base. This measures the arithmetic only; the engine has no such path.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from chatworks.engine.precision import load_for_serving
from chatworks.model.adapters import ALL_LINEAR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--rows", default="1,8")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_for_serving(None, "int4", fuse=False)  # a hook on each projection by name
    cfg = model.cfg
    targets = [
        (name, m) for name, m in model.named_modules() if name.rsplit(".", 1)[-1] in ALL_LINEAR
    ]
    generator = torch.Generator().manual_seed(0)

    def factors(module: torch.nn.Module, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        out_f, in_f = module.dense.shape
        a = torch.randn(n, args.rank, in_f, generator=generator) * 0.01
        b = torch.randn(n, out_f, args.rank, generator=generator) * 0.01
        return a, b

    adapters = {name: factors(m, 2) for name, m in targets}
    mode = {"which": None}

    def hook(name: str):
        def add_delta(module, inputs, output):
            if mode["which"] is None:
                return output
            x = inputs[0].float()  # [B, 1, in]
            a, b = adapters[name]
            if mode["which"] == "one":  # every row uses adapter 0
                delta = (x @ a[0].T) @ b[0].T
            else:  # rows alternate between adapters 0 and 1: gather per row
                index = torch.arange(x.shape[0]) % 2
                delta = torch.bmm(torch.bmm(x, a[index].transpose(1, 2)), b[index].transpose(1, 2))
            return output + delta.to(output.dtype)

        return add_delta

    for name, module in targets:
        module.register_forward_hook(hook(name))
    print(f"{len(targets)} adapted layers, rank {args.rank}, {args.threads} thread(s)")
    for rows in [int(r) for r in args.rows.split(",")]:
        length = 200
        shape = (rows, cfg.n_kv_heads, length + args.steps + 1, cfg.head_dim)
        cache = [
            (torch.zeros(shape, dtype=torch.bfloat16), torch.zeros(shape, dtype=torch.bfloat16))
            for _ in range(cfg.n_layers)
        ]
        times: dict[str, list[float]] = {"base": [], "one": [], "mixed": []}
        with torch.inference_mode():
            for step in range(args.steps):
                for which in ("base", "one", "mixed"):
                    mode["which"] = None if which == "base" else which
                    tokens = torch.randint(0, cfg.vocab_size, (rows, 1))
                    positions = torch.full((rows, 1), length)
                    started = time.perf_counter()
                    model(tokens, positions, cache, length + 1, last_only=True)
                    if step:  # the first round warms up
                        times[which].append(time.perf_counter() - started)
        base = statistics.median(times["base"])
        line = f"rows {rows}: base {1000 * base:.1f} ms"
        for which in ("one", "mixed"):
            t = statistics.median(times[which])
            label = "two adapters mixed" if which == "mixed" else "one adapter"
            line += f", {label} {1000 * t:.1f} ms ({t / base:.2f}x)"
        print(line)


if __name__ == "__main__":
    main()
