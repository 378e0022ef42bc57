"""DDP on CPU: `torchrun --nproc_per_node=2` (gloo) matches one process with the same global batch.

Two processes each compute half of every batch and average gradients with one all-reduce; one
process computes both halves by gradient accumulation. The maths is the same; only the order of
float32 additions differs (all-reduce vs accumulation), so losses agree to ~1e-6 relative at
first and stay within the stated tolerance over the run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chatworks.training.presets import get_preset
from chatworks.training.pretrain import pretrain, read_metrics
from tests.unit.training_corpus import prepare_data

PRESET = get_preset("micro").override(steps=12)  # global batch 8 rows: 2 x 4 or 1 x (2 x 4)
TOLERANCE = 1e-4  # relative, per step


def test_two_process_gloo_matches_one_process(tmp_path):
    prepare_data(tmp_path, PRESET)
    assert PRESET.accumulation_steps(1) == 2 and PRESET.accumulation_steps(2) == 1

    single = pretrain(PRESET, tmp_path / "data", tmp_path / "tokenizer", tmp_path / "one",
                      log=lambda _: None)  # fmt: skip
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run(
        [str(torchrun), "--nproc_per_node=2", "--standalone", "-m", "chatworks.cli",
         "train", "base", "--preset", "micro", "--steps", str(PRESET.steps),
         "--data", str(tmp_path / "data"), "--tokenizer", str(tmp_path / "tokenizer"),
         "--out", str(tmp_path / "two"), "--threads", "1", "--no-track"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ddp = [m["loss"] for m in read_metrics(tmp_path / "two" / "metrics.jsonl") if "loss" in m]
    assert len(ddp) == PRESET.steps
    assert ddp == pytest.approx(single, rel=TOLERANCE)
    assert ddp[-1] < 0.7 * ddp[0]  # and it trained
