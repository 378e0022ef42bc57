"""Runs the commands of docs/learn (the guided path), so the chapters cannot rot.

A chapter's runnable commands are its fenced blocks with the info string `bash learn` or
`bash learn fast` (docs/learn/README.md has the convention). Each chapter is one test: its
blocks, in order, in one bash shell (`set -euo pipefail`) from the repository root, with the
venv's bin first on PATH and CHATWORKS_DATA_DIR in a fresh temporary directory. A block's
`#> REGEX` lines must each match (re.search, MULTILINE) that block's stdout+stderr.

- `test_fast_blocks[chapter]`: only the `bash learn fast` blocks; part of `make test`.
- `test_chapter[chapter]`: every `learn` block, fast ones included; marked `learn`, left out of
  `make test` and run by `make learn-check`.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LEARN_DIR = ROOT / "docs" / "learn"
CHAPTERS = (
    "01-tokenization.md",
    "02-training-loop.md",
    "03-attention.md",
    "04-pretraining-and-scaling.md",
    "05-sft-lora-dpo-rl.md",
    "06-inference.md",
    "07-classical-ml.md",
    "08-retrieval-and-evaluation.md",
    "09-serving-and-apis.md",
    "10-observability.md",
    "11-security.md",
    "12-deployment.md",
)
SECTIONS = ("Where it lives", "Run it", "What to look for", "Exercises")
FAST_TIMEOUT_S = 60
FULL_TIMEOUT_S = 20 * 60
TAIL_CHARS = 4000

FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")


@dataclass
class Block:
    """One runnable fenced block: `fast` when its info string is `bash learn fast`."""

    code: str
    fast: bool
    line: int  # 1-based line of the opening fence in the chapter
    patterns: list[str] = field(default_factory=list)


def parse_blocks(text: str) -> list[Block]:
    """The `bash learn` / `bash learn fast` blocks of a Markdown text, in order. Other fenced
    blocks are skipped; an info string that starts `bash learn` but is neither is an error (a
    typo would otherwise silently drop the block from every run)."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i].strip())
        if not opening:
            i += 1
            continue
        fence, info = opening["fence"], opening["info"].split()
        start, body = i, []
        i += 1
        while i < len(lines) and not (
            lines[i].strip().startswith(fence) and set(lines[i].strip()) == {fence[0]}
        ):
            body.append(lines[i])
            i += 1
        i += 1  # past the closing fence
        if info[:2] != ["bash", "learn"]:
            continue
        if info not in (["bash", "learn"], ["bash", "learn", "fast"]):
            raise ValueError(f"line {start + 1}: unknown info string {' '.join(info)!r}")
        patterns = [ln.strip()[2:].strip() for ln in body if ln.strip().startswith("#>")]
        for pattern in patterns:
            re.compile(pattern, re.MULTILINE)  # a broken regex fails here, not at match time
        blocks.append(Block("\n".join(body), len(info) == 3, start + 1, patterns))
    return blocks


@dataclass
class Outcome:
    ok: bool
    message: str
    outputs: list[str]


def run_blocks(
    blocks: list[Block], data_dir: Path, timeout_s: float, log: Path | None = None
) -> Outcome:
    """Runs `blocks` in one bash shell and checks each block's `#>` patterns. The shell prints
    a random marker before each block so the combined output can be split per block. `log`
    gets the whole output, so a passing run's numbers can be read afterwards."""
    marker = f"@@learn-block-{secrets.token_hex(8)}"
    parts = ["set -euo pipefail"]
    for n, block in enumerate(blocks):
        parts.append(f"printf '\\n{marker} {n}\\n'")
        parts.append(block.code)
    parts.append(f"printf '\\n{marker} end\\n'")
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["CHATWORKS_DATA_DIR"] = str(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        ["bash", "-c", "\n".join(parts)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: a timeout ends the servers it started
    )
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(out)
    outputs: list[str] = []
    last = -1
    pieces = re.split(rf"^{re.escape(marker)} (\d+|end)$", out, flags=re.MULTILINE)
    for label, body in zip(pieces[1::2], pieces[2::2], strict=True):
        if label == "end":
            break
        last = int(label)
        outputs.append(body)

    def report(n: int, why: str) -> str:
        block = blocks[n]
        tail = outputs[n][-TAIL_CHARS:] if n < len(outputs) else out[-TAIL_CHARS:]
        return (
            f"block {n + 1} of {len(blocks)} (line {block.line}): {why}\n"
            f"--- block ---\n{block.code}\n--- output (tail) ---\n{tail}"
        )

    if timed_out:
        return Outcome(False, report(max(last, 0), f"timed out after {timeout_s:.0f} s"), outputs)
    if proc.returncode != 0:
        return Outcome(False, report(max(last, 0), f"exit status {proc.returncode}"), outputs)
    for n, block in enumerate(blocks):
        for pattern in block.patterns:
            if not re.search(pattern, outputs[n], re.MULTILINE):
                return Outcome(False, report(n, f"no match for `#> {pattern}`"), outputs)
    return Outcome(True, "", outputs)


def chapter_files() -> list[Path]:
    return sorted(LEARN_DIR.glob("[0-9][0-9]-*.md"))


def blocks_of(path: Path) -> list[Block]:
    return parse_blocks(path.read_text(encoding="utf-8"))


FAST_CHAPTERS = [p for p in chapter_files() if any(b.fast for b in blocks_of(p))]
FULL_CHAPTERS = [p for p in chapter_files() if blocks_of(p)]


@pytest.mark.parametrize("path", FAST_CHAPTERS, ids=lambda p: p.stem)
def test_fast_blocks(path: Path, tmp_path: Path) -> None:
    blocks = [b for b in blocks_of(path) if b.fast]
    log = ROOT / "runs" / "learn" / f"{path.stem}.fast.log"
    outcome = run_blocks(blocks, tmp_path / "data", FAST_TIMEOUT_S, log)
    assert outcome.ok, f"{path.relative_to(ROOT)} (fast blocks only): {outcome.message}"


@pytest.mark.learn
@pytest.mark.timeout(FULL_TIMEOUT_S + 60)
@pytest.mark.parametrize("path", FULL_CHAPTERS, ids=lambda p: p.stem)
def test_chapter(path: Path, tmp_path: Path) -> None:
    log = ROOT / "runs" / "learn" / f"{path.stem}.log"
    outcome = run_blocks(blocks_of(path), tmp_path / "data", FULL_TIMEOUT_S, log)
    assert outcome.ok, f"{path.relative_to(ROOT)}: {outcome.message}"


def test_chapters_have_their_sections() -> None:
    """Every chapter present has the four sections of the convention; no stray file names."""
    for path in chapter_files():
        assert path.name in CHAPTERS, f"{path.name} is not a chapter name of docs/learn/README.md"
        text = path.read_text(encoding="utf-8")
        missing = [s for s in SECTIONS if not re.search(rf"^#+ {re.escape(s)}\b", text, re.M)]
        assert not missing, f"{path.name} lacks the sections {missing}"


SAMPLE = """# A chapter

```bash learn fast
echo "ratio 3.5"
#> ratio \\d
```

```text
not run
```

```bash
echo never-run; exit 1
```

```bash learn
echo "full only" >&2
#> ^full only$
```
"""


def test_parser_finds_only_learn_blocks() -> None:
    blocks = parse_blocks(SAMPLE)
    assert [(b.fast, b.patterns) for b in blocks] == [
        (True, [r"ratio \d"]),
        (False, ["^full only$"]),
    ]
    assert blocks[0].line == 3
    with pytest.raises(ValueError, match="unknown info string"):
        parse_blocks("```bash learn slow\necho\n```\n")


def test_runner_passes_and_fails(tmp_path: Path) -> None:
    good = run_blocks(parse_blocks(SAMPLE), tmp_path / "a", 30)
    assert good.ok, good.message
    assert "ratio 3.5" in good.outputs[0] and "full only" in good.outputs[1]
    # The environment of the convention: repo root, the venv first, a private data dir.
    env = run_blocks(
        parse_blocks('```bash learn\npwd; command -v python; echo "$CHATWORKS_DATA_DIR"\n```\n'),
        tmp_path / "b",
        30,
    )
    assert env.ok and env.outputs[0].split() == [
        str(ROOT),
        str(Path(sys.executable).parent / "python"),
        str(tmp_path / "b"),
    ]
    wrong = run_blocks(parse_blocks(SAMPLE.replace(r"ratio \d", "ratio 9")), tmp_path / "c", 30)
    assert not wrong.ok and "no match for `#> ratio 9`" in wrong.message
    # set -e: a failing command stops the chapter and names its block.
    failing = run_blocks(
        parse_blocks("```bash learn\ntrue\n```\n```bash learn\nfalse\necho after\n```\n"),
        tmp_path / "d",
        30,
    )
    assert not failing.ok and "block 2 of 2" in failing.message
    assert "after" not in failing.outputs[1]
    slow = run_blocks(parse_blocks("```bash learn\nsleep 30\n```\n"), tmp_path / "e", 1)
    assert not slow.ok and "timed out" in slow.message
