"""Files built once on this machine from what is installed (the engine's int4 kernel, the
given-name list of the PII rules): where they go, and how they are written.

Next to their source when the package's directory is writable (an install's, so an image's
runtime stage gets them with the venv), else under $XDG_CACHE_HOME/chatworks/KIND (default
~/.cache). A built file is named by a hash of its inputs, so nothing stale is ever loaded.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def places(source_dir: Path, kind: str) -> list[Path]:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return [source_dir, cache / "chatworks" / kind]


def path(name: str, where: list[Path]) -> Path:
    """Where `name` was built, or (when it was not yet) the first writable place for it."""
    built = [place / name for place in where if (place / name).exists()]
    writable = [place for place in where if os.access(place, os.W_OK)]
    return built[0] if built else (writable or where[1:])[0] / name


def write(target: Path, make: Callable[[Path], None]) -> Path:
    """`make(scratch_file)`, then renamed to `target`: a process that reads it never sees half
    a file, and a build killed midway leaves nothing behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        made = Path(scratch) / target.name
        make(made)
        made.replace(target)
    return target
