"""`chatworks eval new NAME`: a new golden set to fill in, with the suite entry that runs it.

Writes `NAME.jsonl` (one answerable question with its gold passage, one unanswerable one, both
tagged) and `NAME.sources.txt` (the corpus files the questions are written from), and returns
the `[suites.NAME]` table to paste into a suites file. Not covered: writing good questions
(docs/evals.md says how).
"""

from __future__ import annotations

import json
from pathlib import Path

EXAMPLES = [
    {"id": "example-answerable", "question": "How long is the warranty on the X100 kettle?",
     "gold": [{"source": "manuals/x100.md", "snippet": "a warranty of two years"}],
     "answer": "two years", "answerable": True, "tags": ["dev"]},
    {"id": "example-unanswerable", "question": "What colour is the X100 kettle's box?",
     "gold": [], "answer": None, "answerable": False, "tags": ["dev", "unanswerable"]},
]  # fmt: skip


def suite_snippet(name: str, dataset: Path, corpus: Path) -> str:
    return (
        f"[suites.{name}]\n"
        f'dataset = "{dataset.resolve().as_posix()}"\n'
        f'collection = "{name}"\n'
        f'corpus = "{corpus.resolve().as_posix()}"  # the root of the paths in '
        f"{dataset.with_suffix('.sources.txt').name}\n"
        "max_tokens = 48\n\n"
        f"[suites.{name}.min]\n"
        "containment = 0.5\n\n"
        f"[suites.{name}.max]\n"
        "errors = 0\n"
    )


def scaffold(name: str, directory: Path) -> tuple[Path, Path, str]:
    """(dataset, sources list, suite entry). FileExistsError rather than overwrite a set."""
    directory.mkdir(parents=True, exist_ok=True)
    dataset, sources = directory / f"{name}.jsonl", directory / f"{name}.sources.txt"
    for path in (dataset, sources):
        if path.exists():
            raise FileExistsError(f"{path} already exists")
    dataset.write_text("".join(json.dumps(e) + "\n" for e in EXAMPLES), encoding="utf-8")
    sources.write_text("manuals/x100.md\n", encoding="utf-8")
    return dataset, sources, suite_snippet(name, dataset, directory / "corpus")
