"""Eval suites: named golden sets with their corpus, question selection and thresholds, read
from a TOML file (the bundled `suites.toml`, or the user's `--suites FILE`).

A suite is what `chatworks eval run NAME` runs: which dataset, which collection to ask, where
the dataset's corpus files are (so an in-process run can ingest them first), which questions
(tag, ids, first N) and the bounds that make the run pass or fail. Not covered: running
anything (`suite_run.py`) or checking the bounds (`report.check_thresholds`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from chatworks.evals.datasets import (
    PYTHON_DOCS_ROOT,
    DatasetError,
    EvalItem,
    bbc_news_root,
    load_dataset,
)

BUNDLED_SUITES = Path(__file__).parent / "suites.toml"
# src/chatworks/evals/suites.py -> the checkout holding README.md and docs/ (the demo corpus).
REPO_ROOT = Path(__file__).resolve().parents[3]
_KEYS = {"description", "dataset", "collection", "corpus", "tag", "ids", "limit", "max_tokens",
         "min", "max"}  # fmt: skip


class SuiteError(ValueError):
    """A suites file that does not follow the format; the message names the file and suite."""


@dataclass(frozen=True)
class Suite:
    name: str
    dataset: Path
    collection: str
    corpus: str  # python-docs | bbc-news | repo | a directory
    description: str = ""
    tag: str | None = None
    ids: tuple[str, ...] = ()
    limit: int | None = None
    max_tokens: int = 48
    minimums: dict[str, float] = field(default_factory=dict)
    maximums: dict[str, float] = field(default_factory=dict)
    base: Path = Path(".")  # the suites file's folder, for relative corpus directories

    def corpus_root(self) -> Path:
        """Where the dataset's `.sources.txt` paths are relative to."""
        if self.corpus == "python-docs":
            return PYTHON_DOCS_ROOT
        if self.corpus == "bbc-news":
            return bbc_news_root()
        if self.corpus == "repo":
            return REPO_ROOT
        return (self.base / self.corpus).resolve()

    def items(self) -> list[EvalItem]:
        """The suite's questions, in dataset order: tag filter, then ids, then the first N."""
        items = [i for i in load_dataset(self.dataset) if self.tag is None or self.tag in i.tags]
        if self.ids:
            known = {i.id for i in items}
            unknown = [qid for qid in self.ids if qid not in known]
            if unknown:
                raise DatasetError(f"suite {self.name}: ids not in {self.dataset}: {unknown}")
            items = [i for i in items if i.id in self.ids]
        return items[: self.limit] if self.limit else items


def _bounds(raw: object, where: str) -> dict[str, float]:
    if not isinstance(raw, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in raw.values()
    ):
        raise SuiteError(f"{where}: bounds must be a table of metric = number")
    return {str(k): float(v) for k, v in raw.items()}


def _suite(name: str, raw: object, path: Path) -> Suite:
    where = f"{path}: suite {name!r}"
    if not isinstance(raw, dict):
        raise SuiteError(f"{where}: expected a table")
    if unknown := raw.keys() - _KEYS:
        raise SuiteError(f"{where}: unknown keys {sorted(unknown)}")
    if missing := {"dataset", "collection", "corpus"} - raw.keys():
        raise SuiteError(f"{where}: missing {', '.join(sorted(missing))}")
    ids = raw.get("ids", [])
    if not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        raise SuiteError(f"{where}: ids must be a list of strings")
    limit, max_tokens = raw.get("limit"), raw.get("max_tokens", 48)
    if limit is not None and not (isinstance(limit, int) and limit > 0):
        raise SuiteError(f"{where}: limit must be a positive integer")
    if not (isinstance(max_tokens, int) and max_tokens > 0):
        raise SuiteError(f"{where}: max_tokens must be a positive integer")
    return Suite(
        name=name, dataset=(path.parent / raw["dataset"]).resolve(),
        collection=str(raw["collection"]), corpus=str(raw["corpus"]),
        description=str(raw.get("description", "")), tag=raw.get("tag"), ids=tuple(ids),
        limit=limit, max_tokens=max_tokens, minimums=_bounds(raw.get("min", {}), f"{where} min"),
        maximums=_bounds(raw.get("max", {}), f"{where} max"), base=path.parent,
    )  # fmt: skip


def load_suites(path: Path = BUNDLED_SUITES) -> dict[str, Suite]:
    """Every suite in a suites file, by name; SuiteError naming the file and suite on the first
    problem."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise SuiteError(f"{path}: {e}") from None
    suites = raw.get("suites")
    if not isinstance(suites, dict) or not suites:
        raise SuiteError(f"{path}: no [suites.NAME] tables")
    return {name: _suite(name, table, Path(path)) for name, table in suites.items()}


def get_suite(name: str, path: Path = BUNDLED_SUITES) -> Suite:
    suites = load_suites(path)
    if name not in suites:
        raise SuiteError(f"no suite {name!r} in {path}; there are: {', '.join(suites)}")
    return suites[name]
