"""Constrained decoding: a per-sequence token mask that only lets a grammar's sentences out.

A grammar (llguidance's format: a JSON Schema, or Lark with embedded `%json{...}` schemas) is
compiled against the tokenizer into an `LLMatcher`, one per sequence. Before each sampled token
the matcher fills a bitmask of the tokens that keep the output a prefix of some sentence (EOS
only once the sentence is complete); the engine sets the others' logits to -inf and feeds the
sampled token back. llguidance (Rust) does the schema->grammar and the token-trie walk; this
module only adapts it to the engine's batch. Measured against outlines-core, the other
dependency-free option, on SmolLM2's 49k vocabulary: ~5 ms vs ~2.9 s to compile a schema, and
~0.25 ms per mask (docs/log.md).

Does not cover: which grammar a request needs (providers build it), speculative/forced tokens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import llguidance
import torch

# Compact, single-line JSON: with flexible whitespace a small model can emit newlines or spaces
# forever and never close the object; fixed separators keep every sentence finite and cheap.
_JSON_OPTIONS: dict[str, Any] = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
}


Matcher = llguidance.LLMatcher


class GrammarError(ValueError):
    """The schema or grammar does not compile (the API answers 400)."""


def closed(schema: Any) -> Any:
    """`schema` with every object that lists `properties` closed to others unless it says
    otherwise, as OpenAI's strict mode requires: left open, a small model fills the object with
    invented keys (seen: a `properties` key inside a weather call's arguments) until max_tokens."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: closed(value) for key, value in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema:
        out["additionalProperties"] = False
    return out


def json_schema_grammar(schema: dict[str, Any] | None) -> str:
    """Output is one JSON value valid against `schema` (`closed`); None means any object."""
    return llguidance.LLMatcher.grammar_from_json_schema(
        closed(schema) if schema is not None else {"type": "object"}, defaults=_JSON_OPTIONS
    )


def lark_grammar(lark: str) -> str:
    """A Lark grammar; `%json{...}` inside it embeds a JSON Schema (llguidance's syntax)."""
    return llguidance.LLMatcher.grammar_from_lark(lark)


def lark_json(schema: dict[str, Any]) -> str:
    """A Lark `%json{...}` item for `schema`, with the same compact-JSON options."""
    return "%json " + json.dumps({**closed(schema), "x-guidance": _JSON_OPTIONS})


class Constrainer:
    """Compiles grammars for one tokenizer and masks batches of logits. Thread-safe to compile
    from the event loop's thread while the engine thread masks."""

    def __init__(self, tokenizer_json: str, eos_token_ids: Sequence[int], vocab_size: int):
        # `vocab_size`: the model's logits width, which may exceed the tokenizer's (padding
        # rows of the embedding): llguidance never allows those. ~1 s: once per loaded model.
        self._tokenizer = llguidance.LLTokenizer(
            tokenizer_json, n_vocab=vocab_size, eos_token=list(eos_token_ids)
        )
        self.vocab_size = vocab_size
        self._words = (vocab_size + 31) // 32
        self._shifts = torch.arange(32, dtype=torch.int32)

    def matcher(self, grammar: str) -> Matcher:
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(
            grammar, self._tokenizer
        )
        if is_error:
            raise GrammarError(f"cannot constrain to this schema: {messages[0]}")
        return llguidance.LLMatcher(self._tokenizer, grammar, log_level=0)

    def masks(self, matchers: Sequence[Matcher]) -> torch.Tensor:
        """[n, vocab] bool, True where the token is *not* allowed. llguidance releases the GIL
        while it walks the token trie, so this runs beside the model's forward pass."""
        bits = torch.empty((len(matchers), self._words), dtype=torch.int32)
        for row, matcher in enumerate(matchers):
            matcher.unsafe_compute_mask_ptr(bits[row].data_ptr(), self._words * 4)
        banned = ((bits.unsqueeze(-1) >> self._shifts) & 1) == 0
        return banned.view(len(matchers), -1)[:, : self.vocab_size]


def apply_masks(logits: torch.Tensor, rows: Sequence[int], banned: torch.Tensor) -> None:
    """In place: the banned tokens of the given rows of [batch, vocab] logits get -inf."""
    if len(rows) == logits.shape[0]:  # all constrained: one fill, no gather/scatter
        logits.masked_fill_(banned, float("-inf"))
        return
    for mask, row in zip(banned, rows, strict=True):
        logits[row].masked_fill_(mask, float("-inf"))
