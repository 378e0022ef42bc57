"""A model trained here, served by `chatworks serve --model runs/NAME`, asked via `openai`."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
import torch

from chatworks.providers.base import GenerationRequest, Message
from chatworks.providers.registry import create_provider
from chatworks.settings import Settings
from chatworks.training.pipeline import run
from chatworks.training.presets import get_preset
from tests.servers import start_server
from tests.unit.training_corpus import conversations, write_corpus

pytestmark = [pytest.mark.e2e, pytest.mark.kernels]


def test_trained_model_answers_through_the_openai_client(tmp_path):
    chats = tmp_path / "chats.jsonl"
    chats.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations(40)))
    run_dir = tmp_path / "runs" / "micro"
    run(get_preset("micro"), run_dir, [write_corpus(tmp_path)], chats, track=False,
        log=lambda _: None)  # fmt: skip
    question = [{"role": "user", "content": "The cat sees the dog. What does the cat do?"}]
    env = {"CHATWORKS_DATA_DIR": str(tmp_path / "data")}
    # The reference is the same engine in this process with the settings the server gets: same
    # precision, threads and kernels, so the texts must be equal on any CPU. (An fp32 greedy
    # loop would run other kernels than the server's int4 engine and part at a near-tie.)
    expected, prompt_tokens = asyncio.run(generate_in_process(run_dir, question, tmp_path))

    server = start_server("trained", env, ["--model", str(run_dir)])
    try:
        client = openai.OpenAI(base_url=server.api_url, api_key="none")
        assert [m.id for m in client.models.list().data] == ["micro"]  # the run's name
        reply = client.chat.completions.create(
            model="micro", messages=question, max_tokens=12, temperature=0
        )
    finally:
        server.stop()
    assert reply.choices[0].message.content == expected
    assert reply.usage.prompt_tokens == prompt_tokens > 0
    assert reply.usage.completion_tokens > 0


async def generate_in_process(run_dir, question, tmp_path) -> tuple[str, int]:
    settings = Settings(model=str(run_dir), data_dir=tmp_path / "data", _env_file=None)
    provider = create_provider(settings)
    threads = torch.get_num_threads()  # loading sets the serving thread count
    await provider.load()
    try:
        request = GenerationRequest(
            model="micro", messages=tuple(Message(**m) for m in question), max_tokens=12,
            temperature=0,
        )  # fmt: skip
        deltas = [d async for d in provider.stream(request)]
    finally:
        await provider.close()
        torch.set_num_threads(threads)
    return "".join(d.text for d in deltas), deltas[-1].usage.prompt_tokens
