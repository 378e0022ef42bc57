"""What a load test sends: the requests of one scenario, made the same way for any
OpenAI-compatible server (chatworks, vLLM, llama.cpp's server).

Scenarios: `chat` (a chat completion, whole), `stream` (the same, streamed: TTFT and the gaps
between chunks are measured), `conversation` (streamed turns of multi-turn conversations, each
turn carrying the history before it), `ask` (chatworks' `POST /v1/ask` over a collection),
`embeddings`, `ingest` (a small generated document uploaded to a collection) and `mix` (streamed
chat, ask and embeddings interleaved 3:2:1). Request `i` is always the same request for the
same seed, so two runs, or two servers, see the same work. Not covered: timing and sending
(`client.py`), when requests start (`schedule.py`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCENARIOS = ("chat", "stream", "conversation", "ask", "embeddings", "ingest", "mix")
MIX = ("stream", "stream", "stream", "ask", "ask", "embeddings")

# Short instructions a small model answers at any length; a request's own words come first when
# --prompt-words asks for longer prompts, so no two requests share a prefix.
INSTRUCTIONS = (
    "Write a short story about a lighthouse keeper.",
    "Explain how bees make honey.",
    "Describe a walk through a snowy forest.",
    "List five facts about volcanoes.",
    "Write a letter to a friend about a train journey.",
    "Explain why the sky is blue.",
    "Describe the life of an owl.",
    "Write a poem about the tides.",
)
FOLLOW_UPS = (  # a conversation's later turns
    "Tell me more about that.",
    "Why is that so?",
    "Give me an example.",
    "Now say it in one sentence.",
    "What would surprise a child about it?",
)
QUESTIONS = (  # answerable from chatworks' own README (the `make run` demo collection)
    "How do I run chatworks?",
    "How do I turn on API keys?",
    "How do I use chatworks from any OpenAI client?",
    "How do I deploy chatworks?",
    "How do I ingest my documents?",
    "How do I run the tests?",
)
_WORDS = (
    "river",
    "stone",
    "garden",
    "window",
    "lantern",
    "harbor",
    "meadow",
    "copper",
    "signal",
    "orchard",
    "canvas",
    "ember",
    "valley",
    "thunder",
    "marble",
    "compass",
    "feather",
    "ribbon",
    "anchor",
    "velvet",
    "island",
    "forest",
    "glacier",
    "pepper",
)


@dataclass(frozen=True)
class Call:
    """One HTTP request: `path` is relative to the API base (`.../v1`)."""

    scenario: str
    path: str
    json: dict[str, Any] | None = None
    files: dict[str, tuple[str, bytes, str]] | None = None
    streamed: bool = False


@dataclass
class Workload:
    scenario: str
    model: str
    max_tokens: int = 64
    temperature: float = 0.0
    collection: str = "chatworks-docs"
    embedding_model: str = "all-minilm-l6-v2"
    prompt_words: int = 0
    prompts: tuple[str, ...] = INSTRUCTIONS
    questions: tuple[str, ...] = QUESTIONS
    seed: int = 0
    conversations: int = 8  # in flight at once in the `conversation` scenario
    turns: int = 4  # user turns of each conversation

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}; one of {', '.join(SCENARIOS)}")

    def call(self, i: int) -> Call:
        scenario = MIX[i % len(MIX)] if self.scenario == "mix" else self.scenario
        return getattr(self, f"_{scenario}")(i)

    def _prompt(self, i: int) -> str:
        words = random.Random(f"{self.seed}:{i}").choices(_WORDS, k=self.prompt_words)
        context = f"Notes: {' '.join(words)}.\n\n" if words else ""
        return context + self.prompts[i % len(self.prompts)]

    def _chat(self, i: int, streamed: bool = False) -> Call:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": self._prompt(i)}],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        if streamed:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        return Call("stream" if streamed else "chat", "chat/completions", body, streamed=streamed)

    def _stream(self, i: int) -> Call:
        return self._chat(i, streamed=True)

    def _conversation(self, i: int) -> Call:
        """Turn t of conversation c, replayed: the earlier turns' replies are recorded text, not
        the server's, so request i is the same for every server and run. Requests go round the
        `conversations` in turn (i -> conversation i % conversations, then its next turn), so
        with fewer clients than conversations a turn is sent after the one before it ended:
        what a server's prefix cache, and a balancer's affinity, are for."""
        rounds, c = divmod(i, self.conversations)
        t = rounds % self.turns
        number = (rounds // self.turns) * self.conversations + c  # a new one after the last turn
        messages = [{"role": "user", "content": self._prompt(number)}]
        for k in range(t):
            words = random.Random(f"{self.seed}:reply:{number}:{k}").choices(_WORDS, k=40)
            messages += [{"role": "assistant", "content": " ".join(words).capitalize() + "."},
                         {"role": "user", "content": FOLLOW_UPS[k % len(FOLLOW_UPS)]}]  # fmt: skip
        body = {"model": self.model, "messages": messages, "max_tokens": self.max_tokens,
                "temperature": self.temperature, "stream": True,
                "stream_options": {"include_usage": True}}  # fmt: skip
        return Call("conversation", "chat/completions", body, streamed=True)

    def _ask(self, i: int) -> Call:
        body = {
            "question": self.questions[i % len(self.questions)],
            "collection": self.collection,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        return Call("ask", "ask", body)

    def _embeddings(self, i: int) -> Call:
        return Call("embeddings", "embeddings", {"model": self.embedding_model,
                                                 "input": self._prompt(i)})  # fmt: skip

    def _ingest(self, i: int) -> Call:
        words = random.Random(f"{self.seed}:doc:{i}").choices(_WORDS, k=200)
        text = f"# Load test document {i}\n\n" + " ".join(words) + "\n"
        name = f"load-{self.seed}-{i}.md"
        return Call("ingest", f"collections/{self.collection}/documents",
                    files={"file": (name, text.encode(), "text/markdown")})  # fmt: skip


def read_lines(path: Path) -> tuple[str, ...]:
    """Prompts or questions from a file, one per non-empty line."""
    lines = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if not lines:
        raise ValueError(f"{path} holds no lines")
    return lines
