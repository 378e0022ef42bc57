"""Which files a path argument means, how each is named in its collection (its `source`), and
which stored names a directory's `--prune` may delete.

A source is what every citation shows a client, so it must not carry the ingesting machine's
directory layout. The rule:

- a file inside the current directory is named by its path from there, however the argument
  reached it: from the repository, `docs` gives `docs/operations/slo.md` and `README.md` gives
  `README.md`, and so do `./docs`, `docs/operations` or the absolute path of either. One file,
  one name, from one place;
- a file outside it is named from its argument's parent directory: the argument
  `/srv/kb/handbook` gives `handbook/leave.md`, `/srv/kb/faq.md` gives `faq.md`, from anywhere;
- the filesystem root is never "the current directory" (cron and services run there): it would
  make every name a whole path;
- with an explicit `root` (the eval corpora, whose gold passages name paths under a root),
  every file is named relative to that root.

Names are lexical: a symlink is named where it was found, not where it points.
Not covered: uploads, which are named by their file name (`ingest.ingest_bytes`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from chatworks.rag.parse import FILE_TYPES


def _absolute(path: Path) -> Path:
    # Lexical (no symlink resolution): a file under `docs/` stays under `docs/` even when it
    # is a link to somewhere else.
    return Path(os.path.abspath(path))


def anchor(argument: Path, root: Path | None = None) -> Path:
    """The directory that the sources of the files under `argument` are relative to."""
    if root is not None:
        return _absolute(root)
    here, path = _absolute(Path.cwd()), _absolute(argument)
    if here.parent != here and path.is_relative_to(here):
        return here
    return path.parent


def name(path: Path, base: Path) -> str:
    """The source of `path` relative to `base` ("/"-separated; "" for `base` itself).
    ValueError if `path` lies outside `base`."""
    relative = _absolute(path).relative_to(base).as_posix()
    return "" if relative == "." else relative


def within(source: str, directory: str) -> bool:
    """Whether `source` names a file under the directory whose own name is `directory`
    ("" is the anchor itself, e.g. `.`: every name is under it)."""
    return directory == "" or source.startswith(f"{directory}/")


@dataclass(frozen=True)
class Found:
    """A file to ingest, with its source, or why it has none (it then fails)."""

    path: Path  # as the arguments reached it: what messages show the local user
    source: str
    problem: str | None = None


def _files_under(directory: Path, allowed_types: Collection[str]) -> list[Path]:
    """The files of allowed types under `directory`, hidden ones skipped."""
    found = []
    for child in sorted(directory.rglob("*")):
        hidden = any(part.startswith(".") for part in child.relative_to(directory).parts)
        kind = FILE_TYPES.get(child.suffix.lower())
        if child.is_file() and not hidden and kind in allowed_types:
            found.append(child)
    return found


def find(
    paths: Iterable[Path], allowed_types: Collection[str], root: Path | None = None
) -> tuple[list[Found], list[str]]:
    """The files to ingest (files as given, plus the files under directories), each named once,
    and the names of the directories given (what `--prune` looks under)."""
    found: list[Found] = []
    directories: list[str] = []
    seen: set[Path] = set()
    owner: dict[str, Path] = {}  # source -> the file that has it in this run
    for argument in map(Path, paths):
        base = anchor(argument, root)
        if argument.is_dir():
            with contextlib.suppress(ValueError):  # outside `root`: its files fail below
                directories.append(name(argument, base))
            files = _files_under(argument, allowed_types)
        else:
            files = [argument]
        for path in files:
            if _absolute(path) in seen:  # reached twice (`docs docs/faq.md`): ingested once
                continue
            seen.add(_absolute(path))
            try:
                source = name(path, base)
            except ValueError:
                found.append(Found(path, "", f"{path} is not under the root {root}"))
                continue
            if source in owner:  # two files, one name: `/a/docs` and `/b/docs`
                problem = f"its name {source} is already that of {owner[source]} in this run"
                found.append(Found(path, source, problem))
                continue
            owner[source] = path
            found.append(Found(path, source))
    return found, directories
