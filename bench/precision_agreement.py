"""How often each serving precision's greedy answer equals the float32 reference's.

Runs the prompts of the model probe set (`src/chatworks/evals/data/model_probes.jsonl`) as chat
messages through the engine at each precision, 48 greedy tokens each, and prints, per precision,
how many answers are token-for-token identical to fp32's and the mean number of tokens before
the first difference. The question it answers: does the default precision change answers more
than int8 does? (issue: "no precision default that changes answers").

A precision with `:compiled` runs the engine's compiled decode steps (`engine/compiled.py`);
`:scalar` compiles them to Inductor's scalar C++ instead of its vector code: the same fused
operations rounded another way, as another CPU family's compiled code rounds them (issue 24).

`--torch-int4` runs the int4 and int8 decode rows on torch's int4 kernel instead of the
integer-dot one (`engine/int4_kernel.py`), as the engine did before it.

    .venv/bin/python bench/precision_agreement.py [--precisions fp32,bf16,int8,int4,int4:compiled]
        [--torch-int4]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch._inductor import config as inductor_config

from chatworks.engine.precision import load_for_serving
from chatworks.engine.sampling import SamplingParams
from chatworks.engine.scheduler import Engine

PROBES = Path(__file__).parents[1] / "src/chatworks/evals/data/model_probes.jsonl"


def answers(
    variant: str, prompts: list[str], max_tokens: int, integer_kernel: bool | None = None
) -> list[list[int]]:
    precision, _, code = variant.partition(":")
    inductor_config.cpp.simdlen = 0 if code == "scalar" else None
    model, tokenizer = load_for_serving(None, precision, integer_kernel)
    engine = Engine(model, slots=1, compile=bool(code)).start()
    params = SamplingParams(
        max_tokens=max_tokens, temperature=0.0, stop_token_ids=tokenizer.eos_token_ids
    )
    try:
        return [
            engine.generate(
                tokenizer.encode(tokenizer.apply_chat_template(
                    [{"role": "user", "content": p}], add_generation_prompt=True)),
                params,
            )[0]
            for p in prompts
        ]  # fmt: skip
    finally:
        engine.stop()


def shared_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--precisions", default="fp32,bf16,int8,int4")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--torch-int4", action="store_true", help="torch's int4 kernel for decode")
    args = ap.parse_args()
    torch.set_num_threads(1)
    prompts = [json.loads(line)["prompt"] for line in PROBES.read_text().splitlines()]
    reference = answers("fp32", prompts, args.max_tokens)
    print(f"{len(prompts)} probe prompts, {args.max_tokens} greedy tokens")
    print("| precision | identical to fp32 | mean tokens before the first difference |")
    print("|---|---|---|")
    for precision in args.precisions.split(","):
        kernel = False if args.torch_int4 else None
        got = (
            reference
            if precision == "fp32"
            else answers(precision, prompts, args.max_tokens, kernel)
        )
        same = sum(a == b for a, b in zip(got, reference, strict=True))
        agree = [shared_prefix(a, b) for a, b in zip(got, reference, strict=True)]
        print(f"| {precision} | {same}/{len(prompts)} | {sum(agree) / len(agree):.1f} |")


if __name__ == "__main__":
    main()
