"""The scripted provider: rules, `{cite:...}`, echo, and the Provider contract (limits, stops)."""

from __future__ import annotations

import asyncio
import json

import pytest

from chatworks.providers.base import (
    GenerationRequest,
    Message,
    Provider,
    ProviderError,
    ResponseFormat,
    Tool,
)
from chatworks.providers.registry import create_provider
from chatworks.providers.scripted import Script, ScriptedProvider
from chatworks.settings import Settings

GROUNDED = """Sources:
<source id=1 from="Handbook / Lunch">
Lunch is served at noon.
</source>

<source id=2 from="Handbook > Access">
The code word is BLUEBIRD-42.
</source>

Question: What is the code word?"""


def provider_with(tmp_path, script: dict | None) -> ScriptedProvider:
    path = None
    if script is not None:
        path = tmp_path / "script.json"
        path.write_text(json.dumps(script))
    settings = Settings(provider="scripted", script_path=path, _env_file=None)
    provider = create_provider(settings)
    asyncio.run(provider.load())
    return provider


def run(provider, content: str, **kwargs):
    request = GenerationRequest(model="scripted", messages=(Message("user", content),), **kwargs)

    async def collect():
        return [d async for d in provider.stream(request)]

    return asyncio.run(collect())


def test_is_a_provider_served_as_scripted(tmp_path):
    provider = provider_with(tmp_path, None)
    assert isinstance(provider, Provider) and provider.ready
    assert asyncio.run(provider.models()) == ["scripted"]


def test_first_matching_rule_wins_and_cite_names_the_source_holding_the_text(tmp_path):
    provider = provider_with(tmp_path, {"rules": [
        {"match": "Question: .*code word", "reply": "It is BLUEBIRD-42 {cite:BLUEBIRD-42}."},
        {"match": "code word", "reply": "never reached"},
    ]})  # fmt: skip
    deltas = run(provider, GROUNDED)
    assert "".join(d.text for d in deltas) == "It is BLUEBIRD-42 [2]."
    assert deltas[-1].finish_reason == "stop"
    assert deltas[-1].usage.completion_tokens == 4 == sum(d.tokens for d in deltas)
    assert deltas[-1].usage.prompt_tokens == len(GROUNDED.split())


def test_cite_of_text_in_no_source_is_dropped_and_unmatched_messages_are_echoed(tmp_path):
    provider = provider_with(tmp_path, {"rules": [{"match": "^Hi", "reply": "See {cite:x}."}]})
    assert "".join(d.text for d in run(provider, "Hi there")) == "See ."
    assert "".join(d.text for d in run(provider, "echo  me\nplease")) == "echo  me\nplease"


def test_max_tokens_and_stop_strings_end_like_a_model(tmp_path):
    provider = provider_with(tmp_path, None)
    cut = run(provider, "one two three four five", max_tokens=2)
    assert "".join(d.text for d in cut) == "one two "
    assert (cut[-1].finish_reason, cut[-1].usage.completion_tokens) == ("length", 2)
    stopped = run(provider, "one two three four five", stop=("ee f",))
    assert "".join(d.text for d in stopped) == "one two thr"
    assert stopped[-1].finish_reason == "stop"


def test_a_rule_may_pause_longer_or_shorter_than_the_script(tmp_path):
    provider = provider_with(tmp_path, {"delay_s": 0.5, "rules": [
        {"match": "slowly", "reply": "one two", "delay_s": 3},
        {"match": "at once", "reply": "done", "delay_s": 0},
    ]})  # fmt: skip

    def reply(text: str) -> tuple[str, float]:  # and the pause before each piece
        return provider.reply(GenerationRequest("scripted", messages=(Message("user", text),)))

    assert reply("say it slowly") == ("one two", 3.0)
    assert reply("answer at once") == ("done", 0.0)
    assert reply("echo") == ("echo", 0.5)  # no rule: the script's pause


def test_a_broken_script_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"rules": [{"match": "(unclosed", "reply": "x"}]}')
    with pytest.raises(ValueError, match=r"bad\.json"):
        Script.load(path)


def test_a_greedy_grounded_answer_carries_the_tokens_it_cost(tmp_path):
    from chatworks.rag.answer import Prepared, Source, answer_greedily, build_messages, extract
    from chatworks.rag.retrieve import Retrieved
    from chatworks.rag.types import Chunk, Hit

    text = "The code word is BLUEBIRD-42."
    chunk = Chunk(id="1", document_id="d", collection="c", ordinal=0, text=text, start=0,
                  end=len(text), section="Access")  # fmt: skip
    sources = [Source(1, Retrieved(Hit(chunk, 0.9, "Handbook", "h.md"), 1.0))]
    provider = provider_with(tmp_path, {"rules": [{"match": "code word", "reply": "BLUEBIRD-42"}]})
    prepared = Prepared(sources, build_messages("What is the code word?", sources), 0.9)
    grounded = asyncio.run(answer_greedily(provider, "scripted", "What is the code word?",
                                           prepared, max_tokens=16))  # fmt: skip
    assert grounded.answer == "BLUEBIRD-42" and grounded.citations[0].source == "h.md"
    assert grounded.usage.prompt_tokens > 0 and grounded.usage.completion_tokens > 0
    # An answer known without generation (here the extractive quote) cost no tokens.
    quoted = Prepared(sources, None, 0.9, extract(sources))
    known = asyncio.run(answer_greedily(provider, "scripted", "?", quoted, max_tokens=16))
    assert known.usage.total_tokens == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"response_format": ResponseFormat("json_object")},
        {"tools": (Tool("f", "", {"type": "object"}),), "tool_choice": "required"},
    ],
)
def test_structured_output_it_cannot_enforce_is_a_400_naming_it(tmp_path, kwargs):
    """As the transformers provider: a clear refusal, never a reply that ignores the ask."""
    with pytest.raises(ProviderError) as caught:
        run(provider_with(tmp_path, None), "hi", **kwargs)
    assert caught.value.status_code == 400
    assert next(iter(kwargs)) in str(caught.value)
