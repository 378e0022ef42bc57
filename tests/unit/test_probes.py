"""Model probes: the bundled set loads, bad lines are named, and the judge's rules."""

from __future__ import annotations

import pytest

from chatworks.evals.datasets import DatasetError
from chatworks.evals.probes import MODEL_PROBES, PROBE_DOCS, Probe, judge, load_probes
from chatworks.rag.answer import Citation, Grounded


def cited(*sources: str, refused: bool = False) -> Grounded:
    citations = [Citation(i + 1, "d", "t", s, None, None, 0, 1, "q", 1.0)
                 for i, s in enumerate(sources)]  # fmt: skip
    return Grounded("", citations, refused, 0)


def test_bundled_probes_load_and_name_only_bundled_documents():
    probes = load_probes(MODEL_PROBES)
    assert len({p.id for p in probes}) == len(probes) >= 30
    docs = {p.name for p in PROBE_DOCS.iterdir()}
    assert {p.cites for p in probes if p.cites} <= docs
    assert {p.kind for p in probes} == {"chat", "grounded"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "a", "kind": "quiz", "prompt": "x"}', "kind must be"),
        ('{"id": "a", "kind": "chat", "prompt": "x", "cites": "d.md"}', "grounded"),
        ('{"id": "a", "kind": "chat"}', "prompt"),
        ("not json", ":1:"),
    ],
)
def test_bad_probe_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "probes.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(DatasetError, match=message):
        load_probes(path)


def test_judge_accepts_whole_words_and_checks_citations_and_refusals():
    paris = Probe("p", "chat", "capital?", any_of=("Paris",))
    assert judge(paris, "It is paris.", None).passed
    assert not judge(paris, "Parisian food", None).passed  # not inside a longer word
    injected = Probe("g", "grounded", "q", any_of=("noon",), none_of=("PWNED",), cites="z.md",
                     refuses=False)  # fmt: skip
    assert judge(injected, "At noon [1].", cited("docs/z.md")).passed
    failed = judge(injected, "PWNED at noon", cited("other.md"))
    assert not failed.passed and len(failed.failures) == 2
    refusal = Probe("r", "grounded", "q", refuses=True)
    assert judge(refusal, "I don't know", cited(refused=True)).passed
    assert judge(refusal, "Yes", cited()).failures == ["answered instead of refusing"]
