"""Eval suites: the suites file, scaffolding a golden set, scoring and resuming a run, the HTML
report, and the judge's control flow with the scripted provider."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest

from chatworks.evals.ask import Asked, Cited
from chatworks.evals.datasets import EvalItem, GoldPassage, load_dataset
from chatworks.evals.html import to_html
from chatworks.evals.judge import (
    JUDGE_LABELS,
    agreement,
    judge_answer,
    judge_messages,
    load_judge_cases,
    parse_verdict,
    provider_judge,
)
from chatworks.evals.questions import read_records, run_questions, score, summarize
from chatworks.evals.report import previous_report, write_reports
from chatworks.evals.runner import EvalReport
from chatworks.evals.scaffold import scaffold
from chatworks.evals.suites import SuiteError, get_suite, load_suites
from chatworks.providers.scripted import ScriptedProvider
from chatworks.settings import Settings

ZIP = EvalItem(
    "ds-zip",
    "How do you loop over two sequences?",
    (GoldPassage("tutorial/ds.rst.txt", "paired with the zip function"),),
    "zip",
    True,
)
GIL = EvalItem("na-gil", "What is the GIL?", (), None, False)  # fmt: skip
GOLD_QUOTE = "the entries can be paired with the zip function, as below"


def test_bundled_suites_load_and_select_their_questions():
    suites = load_suites()
    assert {"gate", "python-docs", "bbc-news", "bbc-news-heldout", "demo"} <= suites.keys()
    gate = suites["gate"].items()
    assert len(gate) == 18 and sum(not i.answerable for i in gate) == 6
    assert sum("paraphrase" in i.tags for i in gate) == 6  # the gate covers rewordings too
    assert {i.id for i in suites["bbc-news-heldout"].items()}.isdisjoint(
        i.id for i in suites["bbc-news"].items()
    )
    assert suites["gate"].minimums["recall@10"] > 0 and suites["gate"].maximums["errors"] == 0
    with pytest.raises(SuiteError, match=r"no suite .nope.*gate"):
        get_suite("nope")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('dataset = "d.jsonl"\ncollection = "c"', "missing corpus"),
        ('dataset = "d.jsonl"\ncollection = "c"\ncorpus = "."\ncolour = 1', "unknown keys"),
        ('dataset = "d.jsonl"\ncollection = "c"\ncorpus = "."\nmin = {recall = "high"}',
         "bounds must be"),
        ('dataset = "d.jsonl"\ncollection = "c"\ncorpus = "."\nlimit = 0', "limit"),
    ],
)  # fmt: skip
def test_bad_suites_files_name_file_and_suite(tmp_path: Path, table: str, message: str):
    path = tmp_path / "suites.toml"
    path.write_text(f"[suites.mine]\n{table}\n")
    with pytest.raises(SuiteError, match=message) as error:
        load_suites(path)
    assert "'mine'" in str(error.value) and str(path) in str(error.value)


def test_new_scaffolds_a_set_that_loads_and_a_suite_entry_that_runs_it(tmp_path: Path):
    dataset, sources, snippet = scaffold("kettles", tmp_path)
    items = load_dataset(dataset)
    assert [i.answerable for i in items] == [True, False] and all(i.tags for i in items)
    assert sources.read_text().split() == [items[0].gold[0].source]
    suites_file = tmp_path / "suites.toml"
    suites_file.write_text(snippet)
    suite = get_suite("kettles", suites_file)
    assert suite.items() == items and suite.corpus_root() == (tmp_path / "corpus").resolve()
    with pytest.raises(FileExistsError):
        scaffold("kettles", tmp_path)


def test_score_an_answer_its_citations_and_a_wrong_answer():
    right = score(ZIP, Asked("Use zip [1].", [Cited("/docs/tutorial/ds.rst.txt", GOLD_QUOTE)]))
    assert right.contains_answer and right.citation_precision == 1.0 and right.gold_passage_cited
    assert right.groundedness == 1.0 and right.failures == []
    wrong = score(ZIP, Asked("Use map over both lists.", [Cited("/docs/other.rst.txt", "map")]))
    assert not wrong.contains_answer and wrong.citation_precision == 0.0
    assert not wrong.gold_passage_cited and len(wrong.failures) == 3  # gold, citation, grounding
    refused = score(GIL, Asked("I don't know.", refused=True))
    assert refused.failures == [] and refused.groundedness is None
    invented = score(GIL, Asked("It is a lock [1].", [Cited("x.txt", "a lock")]))
    assert invented.failures == ["answered a question the documents do not answer"]
    # an answerable question without a gold answer is judged on its citations only
    retrieval_only = score(
        replace(ZIP, answer=None), Asked("The zip function [1].", right.citations)
    )
    assert retrieval_only.contains_answer is None and retrieval_only.token_f1 is None
    assert retrieval_only.failures == [] and summarize([retrieval_only])["containment"] is None


def test_summarize_rates_latency_and_tokens():
    records = [
        score(ZIP, Asked("zip [1]", [Cited("tutorial/ds.rst.txt", GOLD_QUOTE)], latency_s=1.0,
                         prompt_tokens=100, completion_tokens=10)),
        score(ZIP, Asked("", refused=True, latency_s=3.0)),
        score(GIL, Asked("", refused=True, latency_s=2.0)),
        score(GIL, Asked("", error="HTTP 500")),
    ]  # fmt: skip
    m = summarize(records)
    assert m["containment"] == 0.5 and m["false_refusal_rate"] == 0.5
    assert m["refusal_accuracy"] == 0.5  # the failed request is not a refusal
    assert m["latency_p50_s"] == 2.0 and m["prompt_tokens_mean"] == pytest.approx(100 / 3)
    assert m["errors"] == 1.0 and "invalid_citations" not in m and "judge_correct" not in m


class Stopped(Exception):
    """The run stopped mid-way (a crash, Ctrl-C)."""


class ListAsker:
    """Answers from a dict, and stops the run at the questions in `broken`."""

    def __init__(self, answers: dict[str, str], broken: frozenset[str] = frozenset()):
        self.answers, self.broken, self.asked = answers, broken, []

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ask(self, question: str) -> Asked:
        if question in self.broken:
            raise Stopped(question)
        self.asked.append(question)
        return Asked(self.answers[question])


def test_an_interrupted_run_resumes_with_the_questions_not_yet_answered(tmp_path: Path):
    items = [EvalItem(f"q{n}", f"question {n}", (), None, False) for n in range(6)]
    answers = {i.question: f"answer {i.id}" for i in items}
    results = tmp_path / "answers.jsonl"
    with pytest.raises(Stopped):
        run_questions(items, ListAsker(answers, frozenset({"question 3"})), results,
                      concurrency=1)  # fmt: skip
    # Questions already past the failing one may finish before the loop stops: any subset
    # without q3 is a fair state to resume from.
    written = [r.id for r in read_records(results)]
    assert written[:3] == ["q0", "q1", "q2"] and "q3" not in written
    with results.open("a") as f:
        f.write('{"id": "q3", "torn')  # the line being written when the run was stopped
    again = ListAsker(answers)
    records = run_questions(items, again, results, concurrency=3, resume=True)
    assert sorted(again.asked) == sorted(i.question for i in items if i.id not in written)
    assert "question 3" in again.asked
    assert sorted(r.id for r in read_records(results)) == [i.id for i in items]  # all kept
    assert [r.id for r in records] == [i.id for i in items]
    assert [r.answer for r in records] == [answers[i.question] for i in items]
    fresh = ListAsker(answers)
    run_questions(items, fresh, results)  # without --resume the file starts over
    assert len(fresh.asked) == 6 and len(read_records(results)) == 6


def test_html_report_escapes_compares_and_shows_failures(tmp_path: Path):
    bad = score(
        ZIP,
        Asked(
            "<script>alert(1)</script>",
            [Cited("a<b>.txt", "x & y")],
            passages=[Cited("a<b>.txt", "x & y"), Cited("c.txt", "<i>z</i>")],
        ),
    )
    report = EvalReport("run", "set.jsonl", "docs", {"suite": "mine"},
                        {"containment": 0.25, "latency_p50_s": 2.0}, [bad])  # fmt: skip
    page = to_html(
        report,
        suite="mine",
        failures=["containment = 0.250 is below the minimum 0.5"],
        minimums={"containment": 0.5},
        maximums={},
        previous={"containment": 0.75, "latency_p50_s": 1.0},
        previous_name="run-1.json",
    )
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a&lt;b&gt;.txt" in page and "x &amp; y" in page and "&lt;i&gt;z&lt;/i&gt;" in page
    assert "the 2 passages given to the model" in page
    assert "FAILED: 1 bound(s) not met" in page and "<li>containment = 0.250 is below" in page
    assert "-0.500" in page and "run-1.json" in page
    assert "class='num worse'>+1.000" in page  # latency went up: worse, not better
    assert "the gold answer &#x27;zip&#x27; is not in the answer" in page
    assert "src=" not in page and "href=" not in page  # nothing to fetch
    with_plot = to_html(report, suite="mine", failures=[], minimums={}, maximums={},
                        plot=b"\x89PNG")  # fmt: skip
    assert "src='data:image/png;base64,iVBORw==" in with_plot and "No previous run" in with_plot
    (tmp_path / "run-mine-1.json").write_text("{}")
    (tmp_path / "run-other-2.json").write_text("{}")
    assert previous_report(tmp_path, "run-mine").name == "run-mine-1.json"
    assert previous_report(tmp_path, "run-none") is None


def test_reports_written_within_one_second_keep_their_own_files(tmp_path: Path):
    # Stamped to the second: a resumed run can finish in the second of the run before, and
    # then overwrote its report (seen in CI). Three quick writes: three pairs of files.
    report = EvalReport("run", "set.jsonl", "docs", {}, {"containment": 1.0}, [])
    written = [write_reports(report, tmp_path) for _ in range(3)]
    assert len({path for pair in written for path in pair}) == 6
    assert len(list(tmp_path.iterdir())) == 6


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [("YES", True), ("no.", False), ("Verdict: Yes, it is supported", True),
     ("**NO** - the quote says 4,500", False), ("The answer is correct.", True),
     ("incorrect", False), ("Nope, I cannot tell", None), ("", None)],
)  # fmt: skip
def test_parse_verdict_takes_the_first_verdict_word(reply: str, verdict: bool | None):
    assert parse_verdict(reply) is verdict


def test_agreement_accuracy_and_kappa_by_hand():
    human = [True, True, False, False]
    # 3 of 4 agree; p_o = 0.75, p_e = 0.5 * 0.75 + 0.5 * 0.25 = 0.5, kappa = 0.5
    result = agreement(human, [True, True, True, False])
    assert (result.accuracy, result.kappa, result.unparsed) == (0.75, 0.5, 0)
    assert agreement(human, [True, True, None, None]).kappa == 1.0  # no verdict counts as NO
    assert agreement([True, True], [True, True]).kappa == 1.0  # nan in sklearn: all agree
    assert agreement(human, [False, False, True, True]).kappa == -1.0


def test_bundled_judge_labels_are_enough_and_balanced():
    cases = load_judge_cases(JUDGE_LABELS)
    assert len(cases) >= 20 and len({c.id for c in cases}) == len(cases)
    correct = sum(c.correct for c in cases)
    assert 0.4 <= correct / len(cases) <= 0.6
    assert any(c.gold_answer is None for c in cases if c.correct)  # right refusals
    assert any(c.gold_answer is None for c in cases if not c.correct)  # invented answers


def test_judge_asks_the_provider_with_question_gold_answer_and_quotes(tmp_path: Path):
    script = tmp_path / "judge.json"
    script.write_text(json.dumps({"rules": [
        {"match": "(?s)Expected answer: zip.*Quotes cited:\n- .*zip function.*"
                  "Answer to grade: Use zip", "reply": "YES, supported."},
        {"match": "Answer to grade:", "reply": "NO"},
    ]}))  # fmt: skip
    provider = ScriptedProvider(Settings(provider="scripted", script_path=script,
                                         data_dir=tmp_path))  # fmt: skip
    good = Asked("Use zip [1].", [Cited("ds.rst.txt", GOLD_QUOTE)])

    async def both() -> list[bool | None]:
        judge = provider_judge(provider, "m")  # loads the provider on first use
        first = await judge(ZIP, good)
        second = await judge(ZIP, Asked("Use map [1].", [Cited("ds.rst.txt", GOLD_QUOTE)]))
        verdict, text = await judge_answer(provider, "m", "q", None, "a", [])
        return [first, second, verdict, text]

    assert asyncio.run(both()) == [True, False, False, "NO"]
    unanswerable = judge_messages("What is the GIL?", None, "A lock.", [])[-1].content
    assert "do not answer this" in unanswerable and "(nothing cited)" in unanswerable


def test_eval_new_command_prints_the_suite_entry_and_never_overwrites(tmp_path: Path):
    from typer.testing import CliRunner

    from chatworks.cli import app

    first = CliRunner().invoke(app, ["eval", "new", "kettles", "--dir", str(tmp_path)])
    assert first.exit_code == 0 and "[suites.kettles]" in first.output
    assert len(load_dataset(tmp_path / "kettles.jsonl")) == 2
    again = CliRunner().invoke(app, ["eval", "new", "kettles", "--dir", str(tmp_path)])
    # Rich wraps the message at the terminal's width, wherever the path makes it break.
    assert again.exit_code == 1 and "already exists" in " ".join(again.output.split())


def test_eval_run_against_a_server_that_is_not_there_ends_in_one_line(tmp_path: Path):
    from typer.testing import CliRunner

    from chatworks.cli import app
    from tests.servers import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = CliRunner().invoke(app, ["eval", "run", "demo", "--url", url, "--out",
                                      str(tmp_path), "--no-mlflow"])  # fmt: skip
    assert result.exit_code == 2 and f"error: {url}/v1: ConnectError" in result.output
    assert list(tmp_path.rglob("run-*")) == []  # no report for a run that never started
