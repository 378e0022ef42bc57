"""Read a GGUF file (llama.cpp's format) into a `ModelConfig` and a float32 state dict.

Covers: Llama-architecture files, any tensor type the `gguf` package can dequantize (Q4_0, Q4_1,
Q4_K, Q6_K, Q8_0, F16, F32, ...). Weights are dequantized to float32 once at load; precision for
serving is chosen afterwards (`chatworks.engine.precision`), which can take a file's Q4_0, Q4_1
and Q8_0 weights as they are stored (`read_quant_groups`) instead of rounding the float32 copy
again. The tokenizer in the same file (`tokenizer.ggml.*`, the chat template) is read into a
`Tokenizer` by `read_tokenizer` and written by `write_gguf`, so both directions of that mapping
live here. `write_gguf` writes our own models (float32, byte-level BPE tokenizer) so that this
reader and llama.cpp load them.
Does not cover: quantizing on write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter, LlamaFileType, TokenType
from gguf.quants import dequantize
from tokenizers import AddedToken, decoders, models
from tokenizers import Tokenizer as HFTokenizer

from chatworks.model.config import ModelConfig
from chatworks.model.tokenizer import Tokenizer, named_pre_tokenizer

# GGUF tensor name -> our (Hugging Face) name; "{i}" is the layer index.
_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TOP_NAMES = {"token_embd": "embed_tokens", "output_norm": "norm", "output": "lm_head"}


def open_gguf(path: str | Path) -> GGUFReader:
    return GGUFReader(str(path))


def metadata(reader: GGUFReader, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def read_config(reader: GGUFReader) -> ModelConfig:
    arch = metadata(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"GGUF architecture {arch!r} is not supported (only 'llama')")

    def meta(key: str, default: Any = None) -> Any:
        return metadata(reader, f"{arch}.{key}", default)

    names = {t.name for t in reader.tensors}
    n_heads = meta("attention.head_count")
    dim = meta("embedding_length")
    scaling = None
    if meta("rope.scaling.type", "none") == "linear":
        scaling = {"rope_type": "linear", "factor": meta("rope.scaling.factor")}
    elif meta("rope.scaling.type", "none") != "none" or "rope_freqs.weight" in names:
        raise ValueError("this GGUF's RoPE scaling is not supported")
    return ModelConfig(
        vocab_size=meta("vocab_size") or len(reader.fields["tokenizer.ggml.tokens"].data),
        dim=dim,
        n_layers=meta("block_count"),
        n_heads=n_heads,
        n_kv_heads=meta("attention.head_count_kv", n_heads),
        hidden_dim=meta("feed_forward_length"),
        head_dim=meta("attention.key_length", dim // n_heads),
        rope_theta=meta("rope.freq_base", 10_000.0),
        rope_scaling=scaling,
        norm_eps=meta("attention.layer_norm_rms_epsilon", 1e-5),
        tie_embeddings="output.weight" not in names,
        qk_norm="blk.0.attn_q_norm.weight" in names,
        max_seq_len=meta("context_length", 2048),
        bos_token_id=metadata(reader, "tokenizer.ggml.bos_token_id"),
        eos_token_ids=eos_token_ids(reader),
    )


def eos_token_ids(reader: GGUFReader) -> tuple[int, ...]:
    """End of text and end of turn (chat models stop on either), without repeats."""
    eos = [metadata(reader, f"tokenizer.ggml.{k}_token_id") for k in ("eos", "eot")]
    return tuple(dict.fromkeys(i for i in eos if i is not None))


def read_tokenizer(reader: GGUFReader) -> Tokenizer:
    """The byte-level BPE tokenizer and chat template a GGUF file carries."""
    kind = metadata(reader, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise ValueError(f"GGUF tokenizer {kind!r} is not supported (only byte-level BPE)")
    tokens: list[str] = metadata(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in metadata(reader, "tokenizer.ggml.merges")]
    hf = HFTokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    hf.pre_tokenizer = named_pre_tokenizer(metadata(reader, "tokenizer.ggml.pre", "gpt2"))
    hf.decoder = decoders.ByteLevel()
    # Control tokens (<|im_start|>) and user-defined ones must match whole in text, not as BPE.
    types = metadata(reader, "tokenizer.ggml.token_type") or []
    hf.add_tokens(
        [
            AddedToken(tok, special=typ == TokenType.CONTROL, normalized=False)
            for tok, typ in zip(tokens, types, strict=False)
            if typ in (TokenType.CONTROL, TokenType.USER_DEFINED)
        ]
    )
    hf.add_special_tokens(
        [t for t, typ in zip(tokens, types, strict=False) if typ == TokenType.CONTROL]
    )
    return Tokenizer(
        hf,
        chat_template=metadata(reader, "tokenizer.chat_template"),
        bos_token_id=metadata(reader, "tokenizer.ggml.bos_token_id"),
        eos_token_ids=eos_token_ids(reader),
        add_bos=bool(metadata(reader, "tokenizer.ggml.add_bos_token", False)),
        pad_token_id=metadata(reader, "tokenizer.ggml.padding_token_id"),
    )


def _rename(gguf_name: str) -> str:
    stem, suffix = gguf_name.rsplit(".", 1)  # suffix: "weight" (or "bias")
    if stem.startswith("blk."):
        _, layer, kind = stem.split(".", 2)
        return f"layers.{layer}.{_LAYER_NAMES[kind]}.{suffix}"
    return f"{_TOP_NAMES[stem]}.{suffix}"


def _undo_rope_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp interleaves each head's rotary halves for its RoPE kernel: undo it."""
    half = w.shape[0] // n_heads // 2
    return w.reshape(n_heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def read_state_dict(reader: GGUFReader, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Every tensor dequantized to float32, under the names `Llama` uses."""
    state: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        if t.tensor_type in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
            w = np.array(t.data, dtype=np.float32)  # a copy: the file is mapped read-only
        else:
            w = dequantize(t.data, t.tensor_type)
        w = w.reshape(tuple(reversed([int(n) for n in t.shape])))  # GGUF lists dims innermost first
        if t.name.endswith("attn_q.weight"):
            w = _undo_rope_permute(w, cfg.n_heads)
        elif t.name.endswith("attn_k.weight"):
            w = _undo_rope_permute(w, cfg.n_kv_heads)
        state[_rename(t.name)] = torch.from_numpy(np.ascontiguousarray(w))
    if cfg.tie_embeddings:
        state["lm_head.weight"] = state["embed_tokens.weight"]
    return state


@dataclass(frozen=True)
class QuantGroups:
    """A weight stored as `bits`-bit codes per group of 32 inputs: w = codes * scale + minimum."""

    codes: torch.Tensor  # uint8 [out, in], 0..2**bits - 1
    scale: torch.Tensor  # float32 [out, in / 32]
    minimum: torch.Tensor  # float32 [out, in / 32]
    bits: int


# Block layouts (ggml): a float16 scale d, for Q4_1 a float16 minimum m, then the 32 codes. Q4:
# 16 bytes, element j in the low nibble of byte j and element j + 16 in its high nibble;
# Q4_1: w = q * d + m, Q4_0: w = (q - 8) * d, i.e. minimum -8d. Q8_0: 32 signed bytes,
# w = q * d, i.e. codes q + 128 and minimum -128d. All are one asymmetric group of 32.
_BLOCKS = {  # type: (bytes per block, bits)
    GGMLQuantizationType.Q4_1: (20, 4),
    GGMLQuantizationType.Q4_0: (18, 4),
    GGMLQuantizationType.Q8_0: (34, 8),
}


def read_quant_groups(reader: GGUFReader, cfg: ModelConfig) -> dict[str, QuantGroups]:
    """The file's Q4_0, Q4_1 and Q8_0 weights as their own codes, scales and minimums, by module
    name (`layers.0.mlp.up_proj`): what `precision`'s packed linears compute with, with nothing
    rounded again. A tied output head is listed under `lm_head` too."""
    groups: dict[str, QuantGroups] = {}
    for t in reader.tensors:
        if t.tensor_type not in _BLOCKS:
            continue
        block, bits = _BLOCKS[t.tensor_type]
        rows = int(t.shape[-1])
        raw = np.asarray(t.data, dtype=np.uint8).reshape(rows, -1, block)
        scale = raw[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
        if t.tensor_type == GGMLQuantizationType.Q4_1:
            minimum = raw[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
        else:
            minimum = -(2 ** (bits - 1)) * scale
        if bits == 8:
            codes = (raw[..., 2:].view(np.int8).astype(np.int16) + 128).astype(np.uint8)
        else:
            packed = raw[..., block - 16 :]
            codes = np.concatenate([packed & 0x0F, packed >> 4], axis=-1)
        parts = [codes.reshape(rows, -1), scale, minimum]
        if t.name.endswith(("attn_q.weight", "attn_k.weight")):  # rows, as in read_state_dict
            heads = cfg.n_heads if t.name.endswith("attn_q.weight") else cfg.n_kv_heads
            parts = [_undo_rope_permute(a, heads) for a in parts]
        tensors = (torch.from_numpy(np.ascontiguousarray(a)) for a in parts)
        groups[_rename(t.name).removesuffix(".weight")] = QuantGroups(*tensors, bits=bits)
    if cfg.tie_embeddings and "embed_tokens" in groups:
        groups["lm_head"] = groups["embed_tokens"]
    return groups


def _rope_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """The inverse of `_undo_rope_permute`: the layout llama.cpp's RoPE kernel expects."""
    half = w.shape[0] // n_heads // 2
    return w.reshape(n_heads, 2, half, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _gguf_name(name: str) -> str:
    stem, suffix = name.rsplit(".", 1)
    if stem.startswith("layers."):
        _, layer, kind = stem.split(".", 2)
        gguf_kind = {v: k for k, v in _LAYER_NAMES.items()}[kind]
        return f"blk.{layer}.{gguf_kind}.{suffix}"
    return f"{ {v: k for k, v in _TOP_NAMES.items()}[stem] }.{suffix}"


def write_gguf(
    path: str | Path,
    cfg: ModelConfig,
    state: dict[str, torch.Tensor],
    tokenizer: Tokenizer,
    name: str = "chatworks",
) -> None:
    """A float32 Llama GGUF with its byte-level BPE tokenizer and chat template."""
    writer = GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_file_type(LlamaFileType.ALL_F32)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_context_length(cfg.max_seq_len)
    writer.add_embedding_length(cfg.dim)
    writer.add_block_count(cfg.n_layers)
    writer.add_feed_forward_length(cfg.hidden_dim)
    writer.add_head_count(cfg.n_heads)
    writer.add_head_count_kv(cfg.n_kv_heads)
    writer.add_key_length(cfg.head_dim)
    writer.add_value_length(cfg.head_dim)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_layer_norm_rms_eps(cfg.norm_eps)
    if cfg.rope_scaling:
        raise ValueError("writing RoPE scaling to GGUF is not supported")
    _add_tokenizer(writer, cfg, tokenizer)
    for key, tensor in state.items():
        if cfg.tie_embeddings and key.startswith("lm_head"):
            continue
        w = tensor.detach().float().numpy()
        if key.endswith("q_proj.weight"):
            w = _rope_permute(w, cfg.n_heads)
        elif key.endswith("k_proj.weight"):
            w = _rope_permute(w, cfg.n_kv_heads)
        writer.add_tensor(_gguf_name(key), np.ascontiguousarray(w))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _add_tokenizer(writer: GGUFWriter, cfg: ModelConfig, tokenizer: Tokenizer) -> None:
    vocab = tokenizer.hf.get_vocab(with_added_tokens=True)
    tokens = sorted(vocab, key=vocab.__getitem__)
    if len(tokens) != cfg.vocab_size:
        raise ValueError(f"tokenizer has {len(tokens)} tokens, the model {cfg.vocab_size}")
    special = {t.content for t in tokenizer.hf.get_added_tokens_decoder().values() if t.special}
    merges = json.loads(tokenizer.hf.to_str())["model"]["merges"]
    writer.add_tokenizer_model("gpt2")
    # llama.cpp's name for the split before BPE; readers rebuild the same split from it.
    writer.add_tokenizer_pre(tokenizer.pre_tokenizer_name)
    writer.add_token_list(tokens)
    writer.add_token_types(
        [TokenType.CONTROL if t in special else TokenType.NORMAL for t in tokens]
    )
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    if tokenizer.bos_token_id is not None:
        writer.add_bos_token_id(tokenizer.bos_token_id)
    eos = list(tokenizer.eos_token_ids)
    if eos:
        writer.add_eos_token_id(eos[0])
    if len(eos) > 1:
        writer.add_eot_token_id(eos[1])
    if tokenizer.pad_token_id is not None:
        writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(tokenizer.add_bos)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)
