"""`chatworks train run` end to end on the micro preset: report, plots, MLflow run, exports."""

from __future__ import annotations

import dataclasses
import json
import math

from typer.testing import CliRunner

from chatworks.cli import app
from chatworks.model import load_pretrained
from tests.unit.training_corpus import conversations, write_corpus


def test_train_run_writes_report_plots_mlflow_and_exports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # ./mlruns lands here
    corpus = write_corpus(tmp_path)
    chats = tmp_path / "chats.jsonl"
    chats.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations(40)))
    args = ["train", "run", "--preset", "micro", "--out", "runs/micro", "--corpus", str(corpus),
            "--chats", str(chats), "--threads", "1"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "micro"
    report = (run / "report.md").read_text()
    for needle in ("base val bpb", "sft val bpb", "cloze accuracy", "commit", "| total |"):
        assert needle in report
    for plot in ("loss.png", "lr.png", "bpb.png"):
        assert (run / plot).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "mlruns" / "mlflow.db").exists()
    assert list((tmp_path / "mlruns" / "artifacts").rglob("report.md"))
    model, tokenizer = load_pretrained(run / "export" / "model.gguf")
    assert model.cfg.n_layers == 2 and tokenizer.apply_chat_template([])
    hf_cfg = load_pretrained(run / "export" / "hf")[0].cfg
    assert hf_cfg == dataclasses.replace(model.cfg, norm_eps=hf_cfg.norm_eps)  # GGUF: float32 eps
    assert math.isclose(hf_cfg.norm_eps, model.cfg.norm_eps, rel_tol=1e-6)

    # Running again finds every stage done and only re-evaluates and re-exports.
    again = CliRunner().invoke(app, [*args, "--no-track"])
    assert again.exit_code == 0, again.output
    assert "base step" not in again.output
