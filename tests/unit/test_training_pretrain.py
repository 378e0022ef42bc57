"""Tokenizer, corpus shards and the pretraining loop on a tiny synthetic corpus (micro preset)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

from chatworks.model.config import ModelConfig
from chatworks.training import corpus as corpus_module
from chatworks.training.corpus import Manifest, clean, prepare_corpus, split_texts
from chatworks.training.data import TokenStream
from chatworks.training.optim import lr_multiplier, newton_schulz
from chatworks.training.presets import get_preset
from chatworks.training.pretrain import pretrain, read_metrics
from chatworks.training.tokenizer_train import bytes_per_token, token_bytes
from tests.unit.training_corpus import prepare_data

PRESET = get_preset("micro")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    corpus, tokenizer = prepare_data(root, PRESET)
    return root, corpus, tokenizer


def test_depth_dial_derives_every_size():
    cfg = ModelConfig.from_depth(4, vocab_size=1000, max_seq_len=256)
    assert (cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim) == (256, 4, 4, 64)
    assert cfg.hidden_dim % 64 == 0 and cfg.hidden_dim >= 8 * cfg.dim // 3
    assert ModelConfig.from_depth(8, 1000, 256).dim == 2 * cfg.dim


def test_tokenizer_round_trips_and_compresses(prepared):
    _, corpus, tokenizer = prepared
    text = "The quick robot opens the file 12345. émigré 😀 <|im_start|>"
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids, skip_special_tokens=False) == text
    assert tokenizer.hf.token_to_id("<|im_start|>") in ids  # special tokens match whole
    assert 256 < tokenizer.vocab_size <= PRESET.vocab_size  # a small corpus may run out of merges
    texts = [p.read_text() for p in sorted(corpus.iterdir())[:20]]
    assert bytes_per_token(tokenizer, texts) > 2.0  # merges learned: well above 1 byte/token
    sizes = token_bytes(tokenizer)
    assert sizes[tokenizer.bos_token_id] == 0
    assert sum(sizes[i] for i in tokenizer.encode("The garden")) == len("The garden")


def test_chat_template_renders_chatml(prepared):
    tokenizer = prepared[2]
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_clean_normalises_whitespace_and_controls():
    assert clean("a \r\nb\x00\n\n\n\nc  \n") == "a\nb\n\nc"


def test_shards_hold_every_document_once_with_bos(prepared, tmp_path):
    root, corpus, tokenizer = prepared
    manifest = Manifest.load(root / "data" / "manifest.json")
    assert manifest.complete and manifest.tokens("val") > 0
    train = TokenStream(root / "data", "train")
    n_docs = len(list(split_texts([corpus], PRESET.corpus_bytes, PRESET.val_fraction, "train")))
    assert int((np.asarray(train.tokens) == tokenizer.bos_token_id).sum()) == n_docs
    # A duplicate file adds nothing: exact dedupe.
    (corpus / "copy.txt").write_text((corpus / "doc0000.txt").read_text())
    again = prepare_corpus(
        [corpus], tokenizer, tmp_path / "data", PRESET.corpus_bytes, PRESET.val_fraction
    )
    assert again.tokens("train") + again.tokens("val") == (
        manifest.tokens("train") + manifest.tokens("val")
    )
    (corpus / "copy.txt").unlink()


def test_corpus_prep_resumes_after_an_interruption(prepared, tmp_path, monkeypatch):
    _, corpus, tokenizer = prepared

    def prep(name: str) -> Manifest:
        return prepare_corpus(
            [corpus], tokenizer, tmp_path / name, PRESET.corpus_bytes, PRESET.val_fraction,
            shard_tokens=2_000, batch_docs=16,
        )  # fmt: skip

    whole = prep("whole")
    real_clean, calls = corpus_module.clean, []

    def dying_clean(text: str) -> str:
        calls.append(1)
        if len(calls) > 100:
            raise KeyboardInterrupt
        return real_clean(text)

    monkeypatch.setattr(corpus_module, "clean", dying_clean)
    with pytest.raises(KeyboardInterrupt):
        prep("resumed")
    interrupted = Manifest.load(tmp_path / "resumed" / "manifest.json")
    assert not interrupted.complete and 0 < interrupted.documents_done < 100
    monkeypatch.setattr(corpus_module, "clean", real_clean)
    resumed = prep("resumed")
    assert resumed.complete and resumed.shards == whole.shards and resumed.bytes == whole.bytes
    for shard in whole.shards["train"] + whole.shards["val"]:
        name = str(shard["file"])
        assert (tmp_path / "whole" / name).read_bytes() == (
            tmp_path / "resumed" / name
        ).read_bytes()


def test_batches_are_next_token_windows_and_split_across_ranks(prepared):
    stream = TokenStream(prepared[0] / "data", "train")
    x, y, cursor = stream.batch(0, rows=4, seq_len=16)
    assert torch.equal(x[:, 1:], y[:, :-1]) and cursor == 4
    assert torch.equal(x[1], torch.from_numpy(stream.window(16, 16).astype(np.int64)))
    shuffled = TokenStream(prepared[0] / "data", "train", shuffle_seed=0)
    starts = [shuffled.window_start(k, 16) for k in range(len(stream) // 16)]
    assert sorted(starts) == list(range(0, len(stream) // 16 * 16, 16))  # each window once
    assert starts != sorted(starts)
    halves = [stream.batch(0, 2, 16, rank=r, world_size=2) for r in (0, 1)]
    assert torch.equal(torch.cat([halves[0][0], halves[1][0]]), x)
    assert halves[0][2] == halves[1][2] == cursor


def test_loss_goes_down_and_resume_is_exact(prepared, tmp_path):
    root = prepared[0]
    data, tok = root / "data", root / "tokenizer"
    torch.set_num_threads(1)  # same kernels in both runs: bitwise-equal float32 sums
    full = pretrain(PRESET, data, tok, tmp_path / "full", log=lambda _: None)
    assert full[0] == pytest.approx(
        math.log(prepared[2].vocab_size), rel=1e-3
    )  # zero head: uniform
    assert sum(full[-5:]) / 5 < 0.5 * full[0]
    metrics = read_metrics(tmp_path / "full" / "metrics.jsonl")
    bpb = [m["val_bpb"] for m in metrics if "val_bpb" in m]
    assert len(bpb) == PRESET.steps // PRESET.eval_every and bpb[-1] < bpb[0]

    first = pretrain(PRESET, data, tok, tmp_path / "split", stop_after=12, log=lambda _: None)
    rest = pretrain(PRESET, data, tok, tmp_path / "split", log=lambda _: None)
    assert first == full[:12]
    assert rest == full[12:]  # exactly: same floats, not approximately
    steps = [m["step"] for m in read_metrics(tmp_path / "split" / "metrics.jsonl") if "loss" in m]
    assert steps == list(range(1, PRESET.steps + 1))
    meta = json.loads((tmp_path / "split" / "checkpoint" / "meta.json").read_text())
    assert meta["step"] == PRESET.steps and meta["model"]["n_layers"] == PRESET.depth


def test_newton_schulz_orthogonalises_each_matrix_of_a_batch():
    g = torch.randn(3, 64, 32, generator=torch.Generator().manual_seed(0))
    g[1] *= 100  # each matrix is normalised on its own
    batched = newton_schulz(g)
    for matrix, alone in zip(batched, g, strict=True):
        torch.testing.assert_close(matrix, newton_schulz(alone), rtol=0, atol=0)
        singular = torch.linalg.svdvals(matrix)
        assert singular.min() > 0.6 and singular.max() < 1.3  # near 1, as the update needs


def test_muon_option_trains(prepared, tmp_path):
    root = prepared[0]
    preset = PRESET.override(optimizer="muon", steps=20)
    losses = pretrain(preset, root / "data", root / "tokenizer", tmp_path, log=lambda _: None)
    assert sum(losses[-3:]) / 3 < 0.6 * losses[0]


def test_schedule_warms_up_then_decays_to_the_floor():
    preset = PRESET.override(steps=100, warmup_steps=10, final_lr_frac=0.1)
    lrs = [lr_multiplier(s, preset) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))
    assert lrs[-1] == pytest.approx(0.1 + 0.9 / 90)
    cosine = PRESET.override(steps=100, warmup_steps=10, decay="cosine")
    assert lr_multiplier(55, cosine) == pytest.approx(0.5)


def test_a_crash_between_the_checkpoint_renames_resumes_from_the_old_one(prepared, tmp_path):
    root = prepared[0]
    out = tmp_path / "run"
    pretrain(PRESET, root / "data", root / "tokenizer", out, stop_after=10, log=lambda _: None)
    checkpoint = out / "checkpoint"
    checkpoint.rename(checkpoint.with_name("checkpoint.old"))  # killed after the first rename
    rest = pretrain(PRESET, root / "data", root / "tokenizer", out, log=lambda _: None)
    assert len(rest) == PRESET.steps - 10  # resumed at step 10, not restarted
