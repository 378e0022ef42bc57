"""Training presets: every knob of a run in one frozen dataclass, and the rules deriving the rest.

A preset names a machine budget (`micro` for tests, `tiny` for a 2-core CPU, `gpu-small` and
`gpu-d20` for one or eight GPUs); CLI flags override single fields with `dataclasses.replace`.
Model shape comes from `depth` alone (`ModelConfig.from_depth`); learning rates follow from the
width here. Nothing in this module trains or reads files.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from chatworks.model.config import ModelConfig

DEFAULT_FINETUNE_LR = 3e-5  # small enough not to wreck a trained network in a few steps


@dataclass(frozen=True)
class Preset:
    name: str
    depth: int  # the one model dial: width, heads and MLP size follow from it
    vocab_size: int
    seq_len: int
    device_batch: int  # rows per forward pass in each process
    batch_tokens: int  # tokens per optimizer step over all processes; accumulation fills the gap
    steps: int  # pretraining optimizer steps
    sft_steps: int
    sft_batch: int = 8  # conversations per SFT step
    sft_lr_frac: float = 0.3  # SFT starts from this fraction of the pretraining learning rates
    # SFT at one AdamW rate for every weight; None: DEFAULT_FINETUNE_LR for an imported model,
    # `sft_lr_frac` of the pretraining rates for a base model trained here.
    finetune_lr: float | None = None
    warmup_steps: int = 20
    decay: Literal["cosine", "linear"] = "linear"
    final_lr_frac: float = 0.0  # learning rate at the last step, as a fraction of the peak
    optimizer: Literal["adamw", "muon"] = "adamw"
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_tokens: int = 16_384  # validation tokens per evaluation
    corpus_bytes: int = 4_000_000  # text used from the corpus (train + val)
    val_fraction: float = 0.02
    sft_conversations: int = 2_000
    seed: int = 1337
    compile: bool = False  # torch.compile the model (pays off on GPU; slow to start on CPU)

    def model_config(
        self, vocab_size: int, bos_token_id: int, eos_token_ids: tuple[int, ...]
    ) -> ModelConfig:
        """The model for a tokenizer of `vocab_size` (at most `self.vocab_size`: small corpora
        can run out of merges, and exported files need the two to agree)."""
        return ModelConfig.from_depth(
            self.depth,
            vocab_size,
            self.seq_len,
            bos_token_id=bos_token_id,
            eos_token_ids=eos_token_ids,
        )

    def accumulation_steps(self, world_size: int) -> int:
        per_pass = self.device_batch * self.seq_len * world_size
        if self.batch_tokens % per_pass:
            raise ValueError(
                f"batch_tokens={self.batch_tokens} is not a multiple of device_batch x seq_len x "
                f"world_size = {per_pass}"
            )
        return self.batch_tokens // per_pass

    def learning_rates(self) -> dict[str, float]:
        """Peak learning rate per parameter group, scaled with the width from one reference.

        Rates are nanochat's, tuned at dim 768, times (dim / 768) ** -0.5: the muP-style rule that
        Adam updates to wider matrices must be smaller for the same change in activations (Yang
        et al. 2022, "Tensor Programs V"). Embeddings take a large rate because each row is only
        updated when its token occurs. Muon's rate is already width-independent (its update is
        orthogonalised, Jordan et al. 2024), so it is not scaled.
        """
        scale = (self.depth * 64 / 768) ** -0.5
        return {
            "embed": 0.2 * scale,
            "head": 0.004 * scale,
            "matrix": 0.02 if self.optimizer == "muon" else 0.004 * scale,
            "norm": 0.004 * scale,
        }

    def override(self, **changes: Any) -> Preset:
        """A copy with the given fields changed; `None` values (flags not passed) are ignored."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown preset fields: {sorted(unknown)}")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        # Unit tests: a few hundred thousand parameters, seconds per run.
        Preset(
            name="micro", depth=2, vocab_size=384, seq_len=64, device_batch=4, batch_tokens=512,
            steps=30, sft_steps=10, sft_batch=4, warmup_steps=3, eval_every=10, eval_tokens=1_024,
            corpus_bytes=200_000, val_fraction=0.1, sft_conversations=64,
        ),
        # A 2-core CPU: the whole pipeline in under 15 minutes (see docs/training.md). Muon:
        # val bpb 1.84 after 300 steps against AdamW's 2.36, for ~7% fewer tokens/s (benchmarks.md).
        Preset(
            name="tiny", depth=4, vocab_size=4_096, seq_len=256, device_batch=8,
            batch_tokens=2_048, steps=300, sft_steps=60, warmup_steps=10, eval_every=60,
            eval_tokens=16_384, corpus_bytes=4_000_000, val_fraction=0.05, sft_conversations=400,
            optimizer="muon",
        ),
        # One 24-80 GB GPU, about an hour: a 12-layer, 768-wide (GPT-2 small sized) model.
        Preset(
            name="gpu-small", depth=12, vocab_size=32_768, seq_len=1_024, device_batch=32,
            batch_tokens=262_144, steps=5_000, sft_steps=1_000, sft_batch=32, warmup_steps=100,
            eval_every=250, eval_tokens=1_048_576, corpus_bytes=10_000_000_000,
            sft_conversations=17_000, optimizer="muon", compile=True,
        ),
        # nanochat's d20 ("speedrun") shape: 8 GPUs, about four hours; needs a corpus of ~40 GB.
        Preset(
            name="gpu-d20", depth=20, vocab_size=65_536, seq_len=2_048, device_batch=32,
            batch_tokens=524_288, steps=21_400, sft_steps=2_000, sft_batch=32, warmup_steps=200,
            eval_every=250, eval_tokens=10_485_760, corpus_bytes=45_000_000_000,
            sft_conversations=17_000, optimizer="muon", compile=True,
        ),
    )
}  # fmt: skip


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}") from None
