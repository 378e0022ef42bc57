"""Read a GGUF file (llama.cpp's format) into a `ModelConfig` and a float32 state dict.

Covers: Llama-architecture files, any tensor type the `gguf` package can dequantize (Q4_0, Q4_1,
Q4_K, Q6_K, Q8_0, F16, F32, ...). Weights are dequantized to float32 once at load; precision for
serving is chosen afterwards (`chatworks.engine.precision`). The tokenizer metadata in the same
file is read by `tokenizer.py`. Does not cover: writing GGUF (the export issue).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize

from chatworks.model.config import ModelConfig

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
    eos = [metadata(reader, f"tokenizer.ggml.{k}_token_id") for k in ("eos", "eot")]
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
        eos_token_ids=tuple(dict.fromkeys(i for i in eos if i is not None)),
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
