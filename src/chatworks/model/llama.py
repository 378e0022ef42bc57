"""A Llama-compatible decoder in plain PyTorch: RMSNorm, RoPE, grouped-query attention, SwiGLU.

Covers: the forward pass for training (whole sequences, causal) and for serving (a batch of
sequences, each at its own position, reading and writing a key/value cache the caller owns).
Does not cover: cache allocation, batching policy or sampling (`chatworks.engine`), nor file
formats (`gguf_io.py`, `hf_io.py`). Parameter names and layouts follow Hugging Face's Llama
(`rotate_half` RoPE), so state dicts convert by renaming only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from chatworks.model.config import ModelConfig

# One (keys, values) pair per layer, each [batch, n_kv_heads, capacity, head_dim].
KVCacheViews = Sequence[tuple[torch.Tensor, torch.Tensor]]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32 whatever the compute dtype, as the reference implementation does.
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rope_frequencies(cfg: ModelConfig) -> torch.Tensor:
    """Inverse frequencies per rotated pair, with the checkpoint's context-extension scaling."""
    inv_freq = 1.0 / cfg.rope_theta ** (
        torch.arange(0, cfg.head_dim, 2, dtype=torch.int64).float() / cfg.head_dim
    )
    scaling = cfg.rope_scaling or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "linear":  # positions are compressed by `factor`
        return inv_freq / float(scaling["factor"])
    if kind == "llama3":  # low frequencies stretched, high kept, smooth blend between (Llama 3.1)
        factor = float(scaling["factor"])
        low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
        old_ctx = float(scaling["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv_freq
        smooth = (old_ctx / wavelen - low) / (high - low)
        blended = (1 - smooth) * inv_freq / factor + smooth * inv_freq
        scaled = torch.where(wavelen > old_ctx / low, inv_freq / factor, blended)
        return torch.where(wavelen < old_ctx / high, inv_freq, scaled)
    if kind != "default":
        raise ValueError(f"unsupported rope scaling {kind!r}")
    return inv_freq


def rope_tables(cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin for every position up to `max_seq_len`, [max_seq_len, head_dim], float32."""
    angles = torch.outer(torch.arange(cfg.max_seq_len).float(), rope_frequencies(cfg))
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, T, heads, head_dim]; cos/sin: [B, T, 1, head_dim]."""
    return (x * cos + rotate_half(x) * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.q_proj = nn.Linear(cfg.dim, cfg.n_heads * hd, bias=False)
        self.k_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * hd, cfg.dim, bias=False)
        # Serving may replace q, k and v by one matmul (`engine.precision.fuse_projections`).
        self.qkv_proj: nn.Module | None = None
        if cfg.qk_norm:
            self.q_norm = RMSNorm(hd, cfg.norm_eps)
            self.k_norm = RMSNorm(hd, cfg.norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        kv: tuple[torch.Tensor, torch.Tensor] | None,
        kv_len: int,
    ) -> torch.Tensor:
        cfg = self.cfg
        B, T, _ = x.shape
        if self.qkv_proj is None:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        else:
            q, k, v = self.qkv_proj(x)
        q = q.view(B, T, cfg.n_heads, cfg.head_dim)
        k = k.view(B, T, cfg.n_kv_heads, cfg.head_dim)
        v = v.view(B, T, cfg.n_kv_heads, cfg.head_dim)
        if cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)

        if kv is None:  # attend within this chunk only (training, or a one-off forward)
            keys, values = k.transpose(1, 2), v.transpose(1, 2)
        else:  # write this chunk at each sequence's own positions, then attend to the prefix
            cache_k, cache_v = kv
            rows = torch.arange(B).unsqueeze(1)
            cache_k[rows, :, positions] = k.to(cache_k.dtype)
            cache_v[rows, :, positions] = v.to(cache_v.dtype)
            keys, values = cache_k[:, :, :kv_len], cache_v[:, :, :kv_len]

        # Grouped-query attention without copying keys: fold each group's query heads into the
        # query-length axis, so one key head serves [group * T] queries; the mask is tiled to match.
        G = cfg.group_size
        q = q.transpose(1, 2).reshape(B, cfg.n_kv_heads, G * T, cfg.head_dim)
        mask = mask.repeat(1, 1, G, 1)
        if kv is None:
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        else:
            out = _cached_attention(q, keys, values, mask)
        out = out.view(B, cfg.n_heads, T, cfg.head_dim).transpose(1, 2).reshape(B, T, -1)
        return self.o_proj(out)


def _cached_attention(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Attention over a cache: plain matmuls with a float32 softmax.

    Not a speed-up: `bench/kernels.py` times it level with the fused kernel (fp32, batch 16,
    301 cached keys). It is kept because the two round differently, and the int4 default model
    sits on a knife edge for some prompts (the e2e tests' "capital of France" question flips to
    a wrong answer with the fused kernel); one attention path for both would need those answers
    re-checked.
    """
    # bmm over (sequence, head) pairs, as `@` would do, but flattening only those two axes: a
    # view whatever the cache's capacity, so a compiled block needs no graph per cache layout.
    B, H, Q, D = q.shape
    keys, values = keys.flatten(0, 1), values.flatten(0, 1)
    scores = torch.bmm(q.flatten(0, 1).to(keys.dtype), keys.transpose(1, 2))
    scores = scores.view(B, H, Q, -1).float() * D**-0.5
    weights = scores.masked_fill(~mask, float("-inf")).softmax(-1).to(values.dtype)
    return torch.bmm(weights.flatten(0, 1), values).view(B, H, Q, D).to(q.dtype)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)
        self.up_proj = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)
        self.down_proj = nn.Linear(cfg.hidden_dim, cfg.dim, bias=False)
        # Serving may replace gate and up by one matmul (`engine.precision.fuse_projections`).
        self.gate_up_proj: nn.Module | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up_proj is None:
            gate, up = self.gate_proj(x), self.up_proj(x)
        else:
            gate, up = self.gate_up_proj(x)
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, *attn_args) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), *attn_args)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        # Computed once, not saved in state dicts (they follow from the config).
        cos, sin = rope_tables(cfg)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None = None,
        kv: KVCacheViews | None = None,
        kv_len: int = 0,
        last_only: bool = False,
        logits_at: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits for `tokens` [B, T].

        positions: [B, T] absolute position of each token (default 0..T-1 for every row).
        kv: per-layer cache views for exactly these B sequences; new keys/values are written at
            `positions` and each token attends to cache entries 0..its position. Entries past a
            sequence's own position are masked, so sequences of different lengths share a batch.
        kv_len: how many cache entries to read (max position + 1 over the batch).
        last_only: return logits for the last token of each row only ([B, V]): all decoding needs.
        logits_at: [B] index of the one token per row to return logits for ([B, V]), for rows
            padded to a common length (the last real token of each row).
        """
        B, T = tokens.shape
        device = tokens.device
        if positions is None:
            positions = torch.arange(T, device=device).expand(B, T)
        key_positions = (
            positions if kv is None else torch.arange(kv_len, device=device).expand(B, kv_len)
        )
        mask = (key_positions.unsqueeze(1) <= positions.unsqueeze(2)).unsqueeze(1)  # [B,1,T,L]
        cos = self.rope_cos[positions].unsqueeze(2)
        sin = self.rope_sin[positions].unsqueeze(2)

        x = self.run_blocks(self.embed_tokens(tokens), cos, sin, mask, positions, kv, kv_len)
        if logits_at is not None:
            x = x[torch.arange(B, device=device), logits_at]
        elif last_only:
            x = x[:, -1]
        return self.lm_head(self.norm(x)).float()

    def run_blocks(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor,
        positions: torch.Tensor, kv: KVCacheViews | None, kv_len: int,
    ) -> torch.Tensor:  # fmt: skip
        """The decoder blocks in order (the engine may replace this with compiled groups)."""
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, mask, positions, None if kv is None else kv[i], kv_len)
        return x
