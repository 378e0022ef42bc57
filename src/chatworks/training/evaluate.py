"""Evaluating a model while and after it trains: bits per byte, multiple choice, samples.

Covers: validation loss and bits per byte (tokenizer-independent, so models with different
vocabularies compare); multiple-choice tasks scored by the log-likelihood of each choice, with a
cloze task built offline from held-out prose (which sentence comes next?); greedy samples.
Does not cover: serving-side evals of answers and retrieval (`chatworks.evals`).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from chatworks.model.llama import Llama
from chatworks.model.tokenizer import Tokenizer
from chatworks.training.data import TokenStream
from chatworks.training.ddp import World, all_reduce_sum


@torch.no_grad()
def bits_per_byte(
    model: Llama,
    stream: TokenStream,
    token_bytes: torch.Tensor,
    seq_len: int,
    rows: int,
    n_tokens: int,
    world: World = World(),
) -> tuple[float, float]:
    """(mean loss in nats per token, bits per byte) over the first `n_tokens` of `stream` (or
    all of it, if shorter: every token is counted once).

    Targets that are special tokens (BOS) stand for no text: they are left out of both sums, so
    bpb = total nats / ln 2 / total UTF-8 bytes of the predicted text.
    """
    n_tokens = min(n_tokens, len(stream) - 1)
    n_batches = max(1, n_tokens // (rows * seq_len * world.size))
    sums = torch.zeros(3, dtype=torch.float64)  # nats, bytes, tokens
    cursor = 0
    for _ in range(n_batches):
        x, y, cursor = stream.batch(cursor, rows, seq_len, world.rank, world.size)
        logits = model(x.to(world.device))
        nats = F.cross_entropy(logits.flatten(0, 1), y.flatten().to(world.device), reduction="none")
        nbytes = token_bytes[y.flatten()].to(nats.device)
        counted = nbytes > 0
        sums += torch.tensor(
            [nats[counted].sum().item(), nbytes.sum().item(), counted.sum().item()],
            dtype=torch.float64,
        )
    nats_sum, bytes_sum, tokens_sum = all_reduce_sum(sums, world).tolist()
    return nats_sum / tokens_sum, nats_sum / math.log(2) / bytes_sum


@torch.no_grad()
def greedy(
    model: Llama, prompt: Sequence[int], max_new: int, stop: Sequence[int] = ()
) -> list[int]:
    """Greedy continuation, recomputing the whole prefix each step (fine for short samples)."""
    ids = list(prompt)
    window, device = model.cfg.max_seq_len, model.embed_tokens.weight.device
    for _ in range(max_new):
        logits = model(torch.tensor([ids[-window:]], device=device), last_only=True)
        token = int(logits[0].argmax())
        if token in stop:
            break
        ids.append(token)
    return ids[len(prompt) :]


def samples(model: Llama, tokenizer: Tokenizer, prompts: Sequence[str], max_new: int) -> list[str]:
    """Greedy completions of plain-text prompts (documents start with BOS, so prompts do too)."""
    bos = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
    out = []
    for prompt in prompts:
        ids = greedy(model, bos + tokenizer.encode(prompt), max_new, tokenizer.eos_token_ids)
        out.append(prompt + tokenizer.decode(ids))
    return out


@dataclass(frozen=True)
class MCItem:
    context: str
    choices: tuple[str, ...]
    answer: int


@torch.no_grad()
def choice_logprobs(model: Llama, tokenizer: Tokenizer, item: MCItem) -> list[float]:
    """Log-likelihood of each choice after the context, per UTF-8 byte of the choice.

    Per byte, not per choice: summed log-probabilities would favour short choices.
    """
    bos = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
    context = bos + tokenizer.encode(item.context)
    scores, device = [], model.embed_tokens.weight.device
    for choice in item.choices:
        target = tokenizer.encode(choice)
        ids = (context + target)[-(model.cfg.max_seq_len + 1) :]
        x = torch.tensor([ids[:-1]], device=device)
        logp = F.log_softmax(model(x)[0, -len(target) :], dim=-1)
        total = logp.gather(1, torch.tensor(target, device=device).unsqueeze(1)).sum().item()
        scores.append(total / max(1, len(choice.encode("utf-8"))))
    return scores


def mc_accuracy(model: Llama, tokenizer: Tokenizer, items: Sequence[MCItem]) -> float:
    correct = 0
    for item in items:
        scores = choice_logprobs(model, tokenizer, item)
        correct += int(max(range(len(scores)), key=scores.__getitem__) == item.answer)
    return correct / max(1, len(items))


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def cloze_task(
    texts: Sequence[str], n_items: int, n_choices: int = 4, seed: int = 0
) -> list[MCItem]:
    """Which sentence comes next? The true next sentence against ones from other documents.

    Built from paragraphs of held-out documents, so any corpus gives a task the model never
    trained on; wrong choices come from other paragraphs. Chance is 1 / n_choices.
    """
    rng = random.Random(seed)
    paragraphs = [p for t in texts for p in t.split("\n\n")]
    sentences = [
        [s for s in _SENTENCE.split(" ".join(p.split())) if 20 <= len(s) <= 200] for p in paragraphs
    ]
    docs = [s for s in sentences if len(s) >= 3]
    if len(docs) < n_choices:
        raise ValueError("too few held-out paragraphs to build a cloze task")
    items = []
    for _ in range(n_items):
        i = rng.randrange(len(docs))
        j = rng.randrange(1, len(docs[i]))
        context = " ".join(docs[i][max(0, j - 2) : j])
        others = rng.sample([d for k, d in enumerate(docs) if k != i], n_choices - 1)
        wrong = [rng.choice(d) for d in others]
        answer = rng.randrange(n_choices)
        choices = [" " + s for s in [*wrong[:answer], docs[i][j], *wrong[answer:]]]
        items.append(MCItem(context, tuple(choices), answer))
    return items
