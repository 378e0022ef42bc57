"""Constrained decoding: its cost in decode tokens/s, and the schema-valid rate it buys.

    .venv/bin/python bench/structured.py [--streams 1,16] [--tokens 96] [--rounds 3]

Engine level (no HTTP), the default model at the serving precision, one torch thread.
1. Cost: n sequences decode exactly `--tokens` tokens each, free and then constrained by a JSON
   Schema whose sentences are longer than that (an array of 30 person objects with bounded
   strings, integers and an enum), so the batch stays n wide for every step in both runs and
   tokens/s compare like for like. The two alternate `--rounds` times; the best of each is
   kept (other work on a shared machine only ever slows a run down).
2. Validity: n extraction prompts that ask for JSON matching a small schema, stopping at EOS
   (max 128 tokens): the share of replies that parse and validate, free vs constrained.
Ratios are against the free run measured in the same process.
"""

from __future__ import annotations

import argparse
import threading
import time

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chatworks.engine.constraints import Constrainer, json_schema_grammar
from chatworks.engine.precision import apply_precision
from chatworks.engine.sampling import SamplingParams
from chatworks.engine.scheduler import Engine, Finish
from chatworks.model import load_pretrained
from chatworks.settings import Settings


class Person(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=24)
    age: int
    city: str = Field(max_length=20)
    role: str = Field(pattern="^(engineer|doctor|teacher|other)$")


LONG = {"type": "array", "items": Person.model_json_schema(), "minItems": 30, "maxItems": 30}
FACTS = [
    "Alice Martin, 34, is an engineer in Paris.",
    "Dr. Kenji Sato (52) practises medicine in Osaka.",
    "Maria Lopez teaches maths in Madrid; she is 41.",
    "Tom, a 28-year-old software engineer, moved to Berlin.",
]


def chat(tokenizer, text: str) -> list[int]:
    messages = [{"role": "user", "content": text}]
    return tokenizer.encode(tokenizer.apply_chat_template(messages))


def run(engine: Engine, prompts, params: SamplingParams, grammar: str | None):
    """Submit all at once; (tokens per sequence, wall seconds from submit to the last Finish)."""
    outputs: list[list[int]] = [[] for _ in prompts]
    done = threading.Semaphore(0)

    def emitter(i: int):
        def emit(event):
            if isinstance(event, Finish):
                done.release()
            else:
                outputs[i].append(event)

        return emit

    start = time.perf_counter()
    for i, ids in enumerate(prompts):
        matcher = engine.constrainer.matcher(grammar) if grammar else None
        engine.submit(ids, params, emitter(i), matcher)
    for _ in prompts:
        done.acquire()
    return outputs, time.perf_counter() - start


def cost(engine: Engine, tokenizer, n: int, tokens: int, rounds: int) -> dict[str, float]:
    """Aggregate tokens/s, free vs constrained, at a batch held at n (best of `rounds`)."""
    prompt = chat(tokenizer, "List thirty people as JSON objects with name, age, city, role.")
    prompts = [prompt] * n
    # No stop tokens: every free sequence runs exactly `tokens`; the schema is longer than that.
    params = SamplingParams(max_tokens=tokens, temperature=0)
    grammar = json_schema_grammar(LONG)
    best = {"free": 0.0, "constrained": 0.0}
    for _ in range(rounds):
        for mode, g in (("free", None), ("constrained", grammar)):
            outputs, wall = run(engine, prompts, params, g)
            assert all(len(o) == tokens for o in outputs), "a sequence ended early"
            best[mode] = max(best[mode], n * tokens / wall)
    return best


def validity(engine: Engine, tokenizer, n: int) -> dict[str, float]:
    schema = Person.model_json_schema()
    ask = "Extract the person as JSON with keys name, age, city, role. Text: "
    prompts = [chat(tokenizer, ask + FACTS[i % len(FACTS)]) for i in range(n)]
    params = SamplingParams(max_tokens=128, temperature=0, stop_token_ids=tokenizer.eos_token_ids)
    rates = {}
    for mode, grammar in (("free", None), ("constrained", json_schema_grammar(schema))):
        outputs, _ = run(engine, prompts, params, grammar)
        valid = 0
        for out in outputs:
            try:
                Person.model_validate_json(tokenizer.decode(out))
                valid += 1
            except ValidationError:
                pass
        rates[mode] = valid / n
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", default="1,16")
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    settings = Settings(_env_file=None)
    torch.set_num_threads(1)  # the engine's thread alone uses settings.threads
    model, tokenizer = load_pretrained()
    apply_precision(model, settings.engine_precision)
    constrainer = Constrainer(tokenizer.hf.to_str(), tokenizer.eos_token_ids, model.cfg.vocab_size)
    streams = [int(s) for s in args.streams.split(",")]
    engine = Engine(model, slots=max(streams), threads=settings.threads, constrainer=constrainer)
    engine.start()
    run(engine, [chat(tokenizer, "hi")], SamplingParams(max_tokens=4, temperature=0), None)

    rows = []
    for n in streams:
        speed, valid = (
            cost(engine, tokenizer, n, args.tokens, args.rounds),
            validity(engine, tokenizer, n),
        )
        rows.append((n, speed, valid))
        print(f"streams={n}: {speed} {valid}", flush=True)
    engine.stop()

    print(f"\n{settings.engine_precision}, threads={settings.threads}, {args.tokens} tokens/seq")
    print("| streams | free tok/s | constrained tok/s | constrained / free | "
          "schema-valid free | schema-valid constrained |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for n, speed, valid in rows:
        ratio = speed["constrained"] / speed["free"]
        print(f"| {n} | {speed['free']:.1f} | {speed['constrained']:.1f} | {ratio:.2f}x | "
              f"{valid['free']:.0%} | {valid['constrained']:.0%} |")  # fmt: skip


if __name__ == "__main__":
    main()
