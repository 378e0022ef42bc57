"""A labelled CSV as the lab sees it: the target, and the other columns sorted into free text,
categories and numbers (detected, or named by the caller).

Detection is deliberately simple and printed, so a wrong guess is seen and overridden
(`--text`, `--categorical`, `--numeric`, `--drop`): a string column whose values are long or
mostly unique is text, a string column with few distinct values is a category, anything
pandas reads as numbers is numeric. Identifier-like columns (unique strings with no spaces)
are dropped. Not covered: dates, images, multi-label targets, several text columns joined in
other ways than with a newline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

TEXT_MIN_MEAN_CHARS = 40  # shorter strings are labels or names rather than prose
CATEGORY_MAX_SHARE = 0.5  # more distinct values than this share of rows: not a category


@dataclass
class Columns:
    text: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    numeric: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """`text` when any column is free text (the text methods run), else `tabular`."""
        return "text" if self.text else "tabular"

    def as_dict(self) -> dict[str, list[str]]:
        return {"text": self.text, "categorical": self.categorical, "numeric": self.numeric}


@dataclass
class Dataset:
    frame: pd.DataFrame  # the feature columns only
    y: np.ndarray  # integer class ids, index into `labels`
    labels: list[str]
    target: str
    columns: Columns
    source: str = ""

    def __len__(self) -> int:
        return len(self.y)

    def texts(self, rows: np.ndarray | None = None) -> list[str]:
        """The text columns of `rows`, joined by newlines (the text methods' input)."""
        frame = self.frame if rows is None else self.frame.iloc[rows]
        return join_text(frame, self.columns.text)


def join_text(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    if len(columns) == 1:
        return frame[columns[0]].fillna("").astype(str).tolist()
    parts = frame[list(columns)].fillna("").astype(str)
    return parts.apply(lambda row: "\n".join(v for v in row if v), axis=1).tolist()


def detect_columns(frame: pd.DataFrame) -> Columns:
    found = Columns()
    for name in frame.columns:
        values = frame[name]
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            found.numeric.append(name)
            continue
        strings = values.dropna().astype(str)
        if strings.empty:
            found.dropped.append(name)
            continue
        unique_share = strings.nunique() / len(strings)
        mean_chars = strings.str.len().mean()
        if mean_chars >= TEXT_MIN_MEAN_CHARS or (
            unique_share > CATEGORY_MAX_SHARE and strings.str.contains(" ").mean() > 0.5
        ):
            found.text.append(name)
        elif unique_share <= CATEGORY_MAX_SHARE:
            found.categorical.append(name)
        else:  # unique, short, no spaces: an id
            found.dropped.append(name)
    return found


def load_csv(
    path: Path | str,
    target: str,
    *,
    text: Sequence[str] = (),
    categorical: Sequence[str] = (),
    numeric: Sequence[str] = (),
    drop: Sequence[str] = (),
) -> Dataset:
    """Reads `path`, drops rows without a target, and sorts the other columns; columns named
    in `text`, `categorical`, `numeric` or `drop` go where they are told."""
    frame = pd.read_csv(path)
    if target not in frame.columns:
        raise ValueError(f"no column {target!r} in {path}; columns: {', '.join(frame.columns)}")
    frame = frame[frame[target].notna()].reset_index(drop=True)
    named = {*text, *categorical, *numeric, *drop}
    missing = named - set(frame.columns)
    if missing:
        raise ValueError(f"no column(s) {', '.join(sorted(missing))} in {path}")
    rest = [c for c in frame.columns if c != target and c not in named]
    columns = detect_columns(frame[rest])
    columns.text += list(text)
    columns.categorical += list(categorical)
    columns.numeric += list(numeric)
    columns.dropped += list(drop)
    categories_as_strings(frame, columns)
    return make_dataset(frame, target, columns, source=str(path))


def make_dataset(frame: pd.DataFrame, target: str, columns: Columns, source: str = "") -> Dataset:
    labels = sorted(frame[target].astype(str).unique().tolist())
    if len(labels) < 2:
        raise ValueError(f"the target {target!r} has {len(labels)} class; 2 or more are needed")
    index = {label: i for i, label in enumerate(labels)}
    y = frame[target].astype(str).map(index).to_numpy(dtype=np.int64)
    used = columns.text + columns.categorical + columns.numeric
    if not used:
        raise ValueError("no feature columns left to learn from")
    return Dataset(frame[used].reset_index(drop=True), y, labels, target, columns, source)


MISSING = "(missing)"


def categories_as_strings(frame: pd.DataFrame, columns: Columns) -> None:
    """Category values as plain strings, a missing one as its own category (the encoders want
    one type per column, and "not recorded" often says something)."""
    for name in columns.categorical:
        frame[name] = frame[name].astype(object).where(frame[name].notna(), MISSING).astype(str)


def records_frame(records: Sequence[dict | str], columns: Columns) -> pd.DataFrame:
    """Inputs to predict on as a frame with the training columns: a string fills the (first)
    text column; a dict names its columns (missing ones are empty)."""
    rows = []
    for record in records:
        if isinstance(record, str):
            if not columns.text:
                raise ValueError("this model takes records with columns, not a string")
            rows.append({columns.text[0]: record})
        else:
            rows.append(record)
    frame = pd.DataFrame(rows, columns=columns.text + columns.categorical + columns.numeric)
    categories_as_strings(frame, columns)
    for name in columns.numeric:
        frame[name] = pd.to_numeric(frame[name], errors="coerce")
    return frame
