"""Text <-> token ids, and the checkpoint's own chat template.

Covers: byte-level BPE tokenizers (GPT-2 family: SmolLM, Llama 3, Qwen, our own trained ones),
loaded from a Hugging Face `tokenizer.json` (a GGUF file's `tokenizer.ggml.*` metadata is read
and written by `gguf_io.py`, with `named_pre_tokenizer` from here); chat templates rendered in a
sandboxed Jinja environment, as Hugging Face does. Does not cover: SentencePiece/unigram
vocabularies (Llama 2, Gemma GGUFs) - those fail loudly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Regex
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import pre_tokenizers as pre

_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def named_pre_tokenizer(kind: str) -> pre.PreTokenizer:
    """llama.cpp's `tokenizer.ggml.pre` names the regex that splits text before BPE."""
    byte_level = pre.ByteLevel(add_prefix_space=False, use_regex=True)
    if kind in ("smollm", "starcoder", "refact"):  # GPT-2 regex, but every digit on its own
        return pre.Sequence([pre.Digits(individual_digits=True), byte_level])
    if kind in ("llama3", "llama-v3", "llama-bpe", "smaug-bpe", "dbrx"):
        return pre.Sequence(
            [
                pre.Split(Regex(_LLAMA3_SPLIT), behavior="isolated"),
                pre.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    return byte_level


def _raise(message: str) -> None:
    raise TemplateError(message)


class Tokenizer:
    def __init__(
        self,
        hf: HFTokenizer,
        chat_template: str | None,
        bos_token_id: int | None,
        eos_token_ids: Sequence[int],
        add_bos: bool = False,
        pad_token_id: int | None = None,
    ):
        self.hf = hf
        self.chat_template = chat_template
        self.bos_token_id = bos_token_id
        self.eos_token_ids = tuple(eos_token_ids)  # generation stops on any of these
        self.add_bos = add_bos
        self.pad_token_id = pad_token_id
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        self._template = env.from_string(chat_template) if chat_template else None

    # --- loading -------------------------------------------------------------------------------

    @classmethod
    def from_dir(cls, path: str | Path, eos_token_ids: Sequence[int] = ()) -> Tokenizer:
        """A Hugging Face directory: tokenizer.json, tokenizer_config.json, chat_template.jinja."""
        path = Path(path)
        hf = HFTokenizer.from_file(str(path / "tokenizer.json"))
        config = _read_json(path / "tokenizer_config.json")
        template = config.get("chat_template")
        if (path / "chat_template.jinja").exists():
            template = (path / "chat_template.jinja").read_text()

        def token_id(key: str) -> int | None:
            token = config.get(key)
            token = token.get("content") if isinstance(token, dict) else token
            return None if token is None else hf.token_to_id(token)

        eos = [*eos_token_ids, token_id("eos_token")]
        return cls(
            hf,
            chat_template=template,
            bos_token_id=token_id("bos_token"),
            eos_token_ids=[i for i in dict.fromkeys(eos) if i is not None],
            add_bos=bool(config.get("add_bos_token", False)),
            pad_token_id=token_id("pad_token"),
        )

    # --- saving --------------------------------------------------------------------------------

    def save(self, out_dir: str | Path) -> None:
        """The Hugging Face files `from_dir` (and transformers' `AutoTokenizer`) read back."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.hf.save(str(out / "tokenizer.json"))
        config: dict[str, Any] = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": self.add_bos,
            "model_max_length": 1_000_000,
        }
        named = {
            "bos_token": self.bos_token_id,
            "eos_token": self.eos_token_ids[0] if self.eos_token_ids else None,  # end of turn
            "pad_token": self.pad_token_id,
        }
        config |= {name: self.id_to_token(i) for name, i in named.items() if i is not None}
        if self.chat_template:
            config["chat_template"] = self.chat_template
            (out / "chat_template.jinja").write_text(self.chat_template)
        (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))

    # --- use -----------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Special-token strings in `text` (from a rendered chat template) map to their ids."""
        ids = self.hf.encode(text, add_special_tokens=False).ids
        if self.add_bos and self.bos_token_id is not None and ids[:1] != [self.bos_token_id]:
            ids.insert(0, self.bos_token_id)
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def id_to_token(self, token_id: int) -> str | None:
        return self.hf.id_to_token(token_id)

    @property
    def pre_tokenizer_name(self) -> str:
        """llama.cpp's name (`tokenizer.ggml.pre`) for this tokenizer's split: the inverse of
        `named_pre_tokenizer`, so a GGUF written from it is split the same way when read back."""
        spec = json.loads(self.hf.to_str()).get("pre_tokenizer") or {}
        steps = spec.get("pretokenizers", [spec])
        kinds = [step.get("type") for step in steps]
        if kinds == ["ByteLevel"]:
            return "gpt2"
        if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
            return "smollm"
        if kinds == ["Split", "ByteLevel"] and steps[0]["pattern"].get("Regex") == _LLAMA3_SPLIT:
            return "llama-bpe"
        raise ValueError(f"no llama.cpp name for the pre-tokenizer {kinds}: cannot write a GGUF")

    def apply_chat_template(
        self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True, **extra: Any
    ) -> str:
        if self._template is None:
            raise ValueError("this checkpoint has no chat template; send a raw prompt instead")
        special = {
            name: self.id_to_token(i) if i is not None else ""
            for name, i in (
                ("bos_token", self.bos_token_id),
                ("eos_token", self.eos_token_ids[0] if self.eos_token_ids else None),
            )
        }
        return self._template.render(
            messages=list(messages), add_generation_prompt=add_generation_prompt, **special, **extra
        )


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}
