"""The one description of a Llama-compatible decoder's shape.

Every loader (GGUF, Hugging Face, our own training checkpoints) fills in a `ModelConfig`; the
network in `llama.py` is built from it alone. Nothing here knows about files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    dim: int  # residual stream width
    n_layers: int
    n_heads: int
    n_kv_heads: int  # < n_heads means grouped-query attention
    hidden_dim: int  # SwiGLU inner width
    head_dim: int = 0  # 0: dim // n_heads (some checkpoints decouple the two)
    rope_theta: float = 10_000.0
    # Hugging Face's `rope_scaling` dict: {"rope_type": "linear" | "llama3", "factor": ...}.
    rope_scaling: dict[str, float | str] | None = None
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    qk_norm: bool = False  # RMSNorm on each head's q and k before RoPE (Qwen3, OLMo2 style)
    max_seq_len: int = 2048
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            object.__setattr__(self, "head_dim", self.dim // self.n_heads)
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv={self.n_kv_heads}")

    @property
    def group_size(self) -> int:
        """Query heads that share one key/value head."""
        return self.n_heads // self.n_kv_heads

    @classmethod
    def from_depth(
        cls,
        depth: int,
        vocab_size: int,
        max_seq_len: int,
        aspect_ratio: int = 64,
        head_dim: int = 64,
        **tokens: Any,
    ) -> ModelConfig:
        """The one dial for models we train: every other size follows from the layer count.

        `tokens` passes `bos_token_id` / `eos_token_ids` through.
        """
        # Width grows linearly with depth at a fixed aspect ratio (dim / n_layers = 64), as in
        # nanochat; Kaplan et al. 2020 ("Scaling Laws", sec. 3.1) find loss depends only weakly
        # on the shape at a given parameter count, so one dial loses little.
        dim = depth * aspect_ratio
        # SwiGLU has three matrices instead of two, so its inner width is 2/3 of the usual 4 * dim
        # to keep the parameter count (Shazeer 2020, "GLU Variants"; LLaMA, Touvron et al. 2023),
        # rounded up to a multiple of 64 for matmul-friendly shapes.
        hidden_dim = -(-(8 * dim // 3) // 64) * 64
        # Full multi-head attention: grouped-query attention (Ainslie et al. 2023) saves KV-cache
        # memory when serving large models; at these sizes it would only cost quality.
        n_heads = max(1, dim // head_dim)
        return cls(
            vocab_size=vocab_size,
            dim=dim,
            n_layers=depth,
            n_heads=n_heads,
            n_kv_heads=n_heads,
            hidden_dim=hidden_dim,
            max_seq_len=max_seq_len,
            **tokens,
        )
