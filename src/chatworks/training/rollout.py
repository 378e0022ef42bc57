"""Sampling answers from the model being trained: batched, seeded per answer, in this thread.

RL and on-policy preference pairs need many answers from the *current* weights between
optimizer steps. This runs them as one batch with a key/value cache (prompts of different
lengths, each row at its own position, as the engine does) and draws each row's tokens with its
own seeded generator (`engine.sampling`), so a resumed run samples the same answers.

Why not the serving `Engine`: it computes on a thread of its own, a second OpenMP team beside
the trainer's, and two-thread teams that outnumber the cores ran at half speed
(docs/architecture.md, "Threads"); and its prefix reuse would hand a new step keys and values
computed with the previous step's weights. Does not cover: continuous batching (every answer
here starts together), constrained decoding, stop strings.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from chatworks.engine.sampling import SamplingParams, make_generator, sample
from chatworks.model.llama import Llama


@torch.inference_mode()
def generate(
    model: Llama,
    prompts: Sequence[Sequence[int]],
    params: Sequence[SamplingParams],
    rows: int = 32,
) -> list[list[int]]:
    """The answer tokens (stop token excluded) of every prompt, `rows` answers per batch.

    Consecutive equal prompts (a group of samples of one question) are prefilled once."""
    out: list[list[int]] = []
    for i in range(0, len(prompts), rows):
        out += _batch(model, prompts[i : i + rows], params[i : i + rows])
    return out


def _batch(
    model: Llama, prompts: Sequence[Sequence[int]], params: Sequence[SamplingParams]
) -> list[list[int]]:
    cfg, device = model.cfg, model.embed_tokens.weight.device
    dtype = model.embed_tokens.weight.dtype
    n = len(prompts)
    if max(len(p) for p in prompts) >= cfg.max_seq_len:
        raise ValueError(f"a prompt leaves no room in the model's context ({cfg.max_seq_len})")
    # Row r reads the prefill of unique prompt `source[r]`: 16 samples of a question cost one.
    unique: list[Sequence[int]] = []
    source = []
    for prompt in prompts:
        if not unique or list(unique[-1]) != list(prompt):
            unique.append(prompt)
        source.append(len(unique) - 1)
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    longest = max(len(p) + q.max_tokens for p, q in zip(prompts, params, strict=True))
    capacity = min(longest, cfg.max_seq_len)
    shape = (n, cfg.n_kv_heads, capacity, cfg.head_dim)
    m = len(unique)
    cache = [(torch.zeros((m, *shape[1:]), dtype=dtype, device=device),
              torch.zeros((m, *shape[1:]), dtype=dtype, device=device))
             for _ in range(cfg.n_layers)]  # fmt: skip
    # Right-padded prefill: a short row's padding writes keys past its prompt, which its own
    # decode steps overwrite position by position before any query can attend to them.
    width = int(lengths.max())
    tokens = torch.zeros((m, width), dtype=torch.long, device=device)
    for row, prompt in enumerate(unique):
        tokens[row, : len(prompt)] = torch.tensor(prompt)
    positions = torch.arange(width, device=device).expand(m, width)
    ends = torch.tensor([len(p) - 1 for p in unique], device=device)
    logits = model(tokens, positions, cache, width, logits_at=ends)
    rows_of = torch.tensor(source, device=device)
    logits = logits[rows_of]
    cache = [(k[rows_of], v[rows_of]) for k, v in cache]  # one copy per answer from here
    generators = [make_generator(p) for p in params]
    answers: list[list[int]] = [[] for _ in range(n)]
    done = [False] * n
    position = lengths.clone()
    while True:
        step = torch.zeros(n, dtype=torch.long, device=device)
        for row in range(n):
            if done[row]:
                continue
            token = sample(logits[row], params[row], generators[row])
            if token in params[row].stop_token_ids:
                done[row] = True
                continue
            answers[row].append(token)
            step[row] = token
            full = len(answers[row]) >= params[row].max_tokens
            done[row] = full or int(position[row]) + 1 >= capacity
        if all(done):
            return answers
        # Finished rows ride along, rewriting their last position (their logits are ignored):
        # one shape for the whole batch.
        logits = model(step.unsqueeze(1), position.unsqueeze(1), cache, int(position.max()) + 1,
                       last_only=True)  # fmt: skip
        position += torch.tensor([0 if d else 1 for d in done], device=device)
