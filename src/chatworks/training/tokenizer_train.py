"""Train a byte-level BPE tokenizer with chat special tokens, and measure its compression.

Covers: training with Hugging Face `tokenizers` on an iterator of texts, saving a directory that
`chatworks.model.Tokenizer.from_dir` (and transformers) load - `tokenizer.json`,
`tokenizer_config.json`, `chat_template.jinja` - and bytes-per-token against another tokenizer.
Does not cover: reading corpora (`corpus.py`) or tokenizing them to shards (`corpus.py` too).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, trainers
from tokenizers import pre_tokenizers as pre

from chatworks.model.tokenizer import Tokenizer, named_pre_tokenizer

BOS, PAD, IM_START, IM_END = "<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [BOS, IM_START, IM_END, PAD]  # ids 0..3, in this order

# ChatML, the format SmolLM2 (the default model) uses, so one template serves both.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path) -> Tokenizer:
    """Learn merges from `texts`, save to `out_dir`, return the loaded tokenizer."""
    hf = HFTokenizer(models.BPE())
    # GPT-2's split with every digit on its own (llama.cpp calls it "smollm"): digit-by-digit
    # numbers help small models with arithmetic, as in SmolLM and Llama.
    hf.pre_tokenizer = named_pre_tokenizer("smollm")
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        # All 256 byte symbols up front: any text encodes, even bytes the corpus never had.
        initial_alphabet=pre.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    hf.train_from_iterator(texts, trainer=trainer)
    return save_tokenizer(hf, out_dir)


def save_tokenizer(hf: HFTokenizer, out_dir: str | Path) -> Tokenizer:
    tokenizer = Tokenizer(
        hf,
        CHAT_TEMPLATE,
        bos_token_id=hf.token_to_id(BOS),
        eos_token_ids=(hf.token_to_id(IM_END), hf.token_to_id(BOS)),  # end of turn, of text
        add_bos=False,  # documents get BOS when the corpus is tokenized, prompts don't
        pad_token_id=hf.token_to_id(PAD),
    )
    tokenizer.save(out_dir)
    return tokenizer


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Our trained tokenizer: generation stops at `<|im_end|>` or `<|endoftext|>`."""
    hf = HFTokenizer.from_file(str(Path(path) / "tokenizer.json"))
    eos = (hf.token_to_id(IM_END), hf.token_to_id(BOS))
    return Tokenizer.from_dir(path, eos_token_ids=eos)


def token_bytes(tokenizer: Tokenizer) -> list[int]:
    """UTF-8 length of each token's text; 0 for special tokens, which stand for no text.

    Bits per byte divides the loss by these, so models with different vocabularies compare.
    """
    special = set(tokenizer.hf.get_added_tokens_decoder())
    # Count the token's own symbols (one per byte in byte-level BPE), not its decoded text: a
    # token holding half of a UTF-8 character decodes to U+FFFD, which is three bytes.
    return [
        0 if i in special else len(tokenizer.id_to_token(i) or "")
        for i in range(tokenizer.vocab_size)
    ]


def bytes_per_token(tokenizer: Tokenizer, texts: Iterable[str]) -> float:
    """Compression on `texts`: higher means fewer tokens for the same text."""
    n_bytes = n_tokens = 0
    for text in texts:
        n_bytes += len(text.encode("utf-8"))
        n_tokens += len(tokenizer.hf.encode(text, add_special_tokens=False).ids)
    return n_bytes / max(n_tokens, 1)
