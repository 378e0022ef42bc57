"""`chatworks eval run --url`: a suite asked over HTTP of a real server with the scripted
provider, the corpus uploaded through the API (`--ingest`), the HTML report, an MLflow run, and
`--resume` asking nothing twice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatworks.cli import app
from chatworks.evals.probes import PROBE_DOCS
from tests.servers import LiveServer

pytestmark = pytest.mark.e2e

# Answers come from the scripted server's rules (tests/e2e/conftest.py SCRIPT): the code word
# with its citation, and a refusal for the dress code (the answerability check's, or else the
# model's own).
QUESTIONS = [
    {"id": "code-word", "question": "What is the secret code word of the Zephyr project?",
     "gold": [{"source": "handbook/zephyr.md", "snippet": "is BLUEBIRD-42"}],
     "answer": "BLUEBIRD-42", "answerable": True, "tags": ["remote"]},
    {"id": "dress-code", "question": "What is the dress code in the Zephyr office?",
     "gold": [], "answer": None, "answerable": False, "tags": ["remote"]},
    {"id": "guitar", "question": "How do I tune a guitar to drop D?",
     "gold": [], "answer": None, "answerable": False, "tags": ["remote"]},
]  # fmt: skip


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    # The corpus under a subfolder: an upload must keep the path the gold passage names.
    shutil.copytree(PROBE_DOCS, tmp_path / "corpus" / "handbook")
    dataset = tmp_path / "remote.jsonl"
    dataset.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    names = sorted(p.name for p in PROBE_DOCS.iterdir())
    dataset.with_suffix(".sources.txt").write_text("".join(f"handbook/{n}\n" for n in names))
    suites = tmp_path / "suites.toml"
    suites.write_text(
        '[suites.remote]\ndataset = "remote.jsonl"\ncollection = "eval-remote"\n'
        'corpus = "corpus"\nmax_tokens = 32\n'
        '[suites.remote.min]\ncontainment = 1.0\nrefusal_accuracy = 1.0\n"recall@10" = 0.9\n'
        "[suites.remote.max]\nerrors = 0\n"
    )
    return suites


def _run(*args: str):
    return CliRunner().invoke(app, ["eval", "run", "remote", *args], catch_exceptions=False)


def test_eval_run_over_http_writes_reports_and_an_mlflow_run(
    scripted_server: LiveServer, suite_file: Path, tmp_path: Path
) -> None:
    out, store = tmp_path / "reports", tmp_path / "mlruns"
    common = ["--suites", str(suite_file), "--url", scripted_server.base_url, "--out", str(out),
              "--mlflow-store", str(store)]  # fmt: skip
    first = _run(*common, "--ingest", "--concurrency", "2")
    assert first.exit_code == 0, first.output
    assert "not measured over HTTP, bound skipped: recall@10" in first.output
    reports = sorted((out / "remote").glob("run-remote-*.json"))
    assert len(reports) == 1 and reports[0].with_suffix(".html").is_file()
    report = json.loads(reports[0].read_text())
    metrics, records = report["metrics"], {q["id"]: q for q in report["questions"]}
    assert metrics["containment"] == 1.0 and metrics["refusal_accuracy"] == 1.0
    assert "recall@10" not in metrics and metrics["errors"] == 0
    code = records["code-word"]
    assert "BLUEBIRD-42" in code["answer"] and code["gold_passage_cited"]
    assert [c["source"] for c in code["citations"]] == ["handbook/zephyr.md"]
    assert code["completion_tokens"] > 0 and code["prompt_tokens"] > 0  # generated over HTTP
    assert records["dress-code"]["refused"] and records["guitar"]["refused"]

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store.resolve()}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("chatworks-evals").experiment_id])
    assert len(runs) == 1 and runs[0].data.metrics["containment"] == 1.0
    assert runs[0].data.params["mode"] == "http"
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert reports[0].with_suffix(".html").name in artifacts

    # --resume: everything is in answers.jsonl already, so nothing is asked again, and the
    # new report is compared with the first.
    answers = (out / "remote" / "answers.jsonl").read_text()
    second = _run(*common, "--resume", "--no-mlflow")
    assert second.exit_code == 0, second.output
    assert (out / "remote" / "answers.jsonl").read_text() == answers
    newest = max((out / "remote").glob("run-remote-*.html"), key=lambda p: p.stat().st_mtime_ns)
    assert newest != reports[0].with_suffix(".html")
    assert f"Compared with {reports[0].name}" in newest.read_text()


def test_judge_over_http_uses_the_local_provider_and_flags_rejected_answers(
    scripted_server: LiveServer, suite_file: Path, tmp_path: Path, monkeypatch
) -> None:
    # The judge is this process's provider (scripted here), not the server's model.
    script = tmp_path / "judge.json"
    script.write_text(json.dumps({"rules": [
        {"match": "Answer to grade: The code word", "reply": "NO, the quote disagrees."},
        {"match": "Answer to grade:", "reply": "YES"},
    ]}))  # fmt: skip
    monkeypatch.setenv("CHATWORKS_PROVIDER", "scripted")
    monkeypatch.setenv("CHATWORKS_SCRIPT_PATH", str(script))
    out = tmp_path / "reports"
    result = _run("--suites", str(suite_file), "--url", scripted_server.base_url, "--ingest",
                  "--judge", "--out", str(out), "--no-mlflow")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(next((out / "remote").glob("run-remote-*.json")).read_text())
    verdicts = {q["id"]: q["judge"] for q in report["questions"]}
    assert verdicts == {"code-word": False, "dress-code": True, "guitar": True}
    assert report["metrics"]["judge_correct"] == pytest.approx(2 / 3)
    assert report["params"]["judge_model"]
    failures = {q["id"]: q["failures"] for q in report["questions"]}
    assert failures["code-word"] == ["the judge says the answer is not correct and supported"]


def test_eval_run_over_http_fails_without_the_collection(
    scripted_server: LiveServer, suite_file: Path, tmp_path: Path
) -> None:
    suite_file.write_text(suite_file.read_text().replace("eval-remote", "never-uploaded"))
    result = _run("--suites", str(suite_file), "--url", scripted_server.base_url, "--out",
                  str(tmp_path), "--no-mlflow")  # fmt: skip
    assert result.exit_code == 2
    assert "no collection 'never-uploaded' (use --ingest)" in result.output
