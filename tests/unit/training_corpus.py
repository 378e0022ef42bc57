"""A small synthetic corpus for the training tests: patterned prose a micro model learns fast."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from chatworks.model.tokenizer import Tokenizer
from chatworks.training.corpus import prepare_corpus, split_texts
from chatworks.training.presets import Preset, get_preset
from chatworks.training.tokenizer_train import train_tokenizer

NOUNS = ["cat", "dog", "bird", "list", "file", "river", "king", "function", "garden", "robot"]
ADJECTIVES = ["small", "quick", "green", "lazy", "bright", "old", "empty", "happy"]
VERBS = ["sees", "opens", "likes", "reads", "moves", "calls", "finds", "keeps"]


def sentence(rng: random.Random) -> str:
    a, b = rng.sample(NOUNS, 2)
    return f"The {rng.choice(ADJECTIVES)} {a} {rng.choice(VERBS)} the {b}."


def write_corpus(root: Path, n_docs: int = 160, seed: int = 0) -> Path:
    """`n_docs` text files of 8-16 sentences each, in `root/corpus`."""
    rng = random.Random(seed)
    corpus = root / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for i in range(n_docs):
        text = " ".join(sentence(rng) for _ in range(rng.randint(8, 16)))
        (corpus / f"doc{i:04d}.txt").write_text(f"Story {i}.\n\n{text}\n")
    return corpus


def prepare_data(root: Path, preset: Preset) -> tuple[Path, Tokenizer]:
    """The corpus above, a tokenizer trained on it (`root/tokenizer`) and its token shards
    (`root/data`), sized by `preset`. Returns the corpus directory and the tokenizer."""
    corpus = write_corpus(root)
    texts = split_texts([corpus], preset.corpus_bytes, preset.val_fraction, "train")
    tokenizer = train_tokenizer(texts, preset.vocab_size, root / "tokenizer")
    prepare_corpus([corpus], tokenizer, root / "data", preset.corpus_bytes, preset.val_fraction)
    return corpus, tokenizer


def conversations(n: int = 40, seed: int = 0) -> list[list[dict[str, str]]]:
    """Chats where the answer follows from the question: 'What does the cat see?' -> 'the dog'."""
    rng = random.Random(seed)
    chats = []
    for _ in range(n):
        a, b = rng.sample(NOUNS, 2)
        verb = rng.choice(VERBS)
        chats.append(
            [
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": f"The {a} {verb} the {b}. What does the {a} do?"},
                {"role": "assistant", "content": f"It {verb} the {b}."},
                {"role": "user", "content": "Thanks!"},
                {"role": "assistant", "content": "You are welcome."},
            ]
        )
    return chats


def micro_checkpoint(root: Path, seed: int = 0) -> Path:
    """A micro model straight from PyTorch's default initialisation (no pretraining: seconds,
    not the half minute `pretrain` takes), saved as a checkpoint with a tokenizer trained on the
    corpus above. Its logits are far from uniform, so adapters and losses have work to do."""
    from chatworks.model import checkpoint_io
    from chatworks.model.llama import Llama

    preset = get_preset("micro")
    corpus = write_corpus(root)
    texts = split_texts([corpus], preset.corpus_bytes, preset.val_fraction, "train")
    tokenizer = train_tokenizer(texts, preset.vocab_size, root / "tokenizer")
    cfg = preset.model_config(
        tokenizer.vocab_size, tokenizer.bos_token_id or 0, tokenizer.eos_token_ids
    )
    torch.manual_seed(seed)
    model = Llama(cfg)
    out = root / "init" / "checkpoint"
    out.mkdir(parents=True)
    checkpoint_io.write(out, model, tokenizer, {"stage": "init"})
    return out


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Micro models' small ops run several times faster on one thread than on two on a busy
    2-core machine (a sweep test: 70 s on two threads, 10 s on one); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
