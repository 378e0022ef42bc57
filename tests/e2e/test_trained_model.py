"""A model trained here, served by `chatworks serve --model runs/NAME`, asked via `openai`."""

from __future__ import annotations

import json

import openai
import pytest

from chatworks.model import load_pretrained
from chatworks.training.evaluate import greedy
from chatworks.training.pipeline import run
from chatworks.training.presets import get_preset
from tests.servers import start_server
from tests.unit.training_corpus import conversations, write_corpus

pytestmark = pytest.mark.e2e


def test_trained_model_answers_through_the_openai_client(tmp_path):
    chats = tmp_path / "chats.jsonl"
    chats.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations(40)))
    run_dir = tmp_path / "runs" / "micro"
    run(get_preset("micro"), run_dir, [write_corpus(tmp_path)], chats, track=False,
        log=lambda _: None)  # fmt: skip
    question = [{"role": "user", "content": "The cat sees the dog. What does the cat do?"}]
    model, tokenizer = load_pretrained(run_dir / "sft")
    prompt = tokenizer.encode(tokenizer.apply_chat_template(question))
    expected = tokenizer.decode(greedy(model, prompt, 12, tokenizer.eos_token_ids))

    server = start_server(
        "trained", {"CHATWORKS_DATA_DIR": str(tmp_path / "data")},
        ["--model", str(run_dir)],
    )  # fmt: skip
    try:
        client = openai.OpenAI(base_url=server.api_url, api_key="none")
        assert [m.id for m in client.models.list().data] == ["micro"]  # the run's name
        reply = client.chat.completions.create(
            model="micro", messages=question, max_tokens=12, temperature=0
        )
    finally:
        server.stop()
    assert expected.strip()  # the fine-tuned model says something before its end of turn
    assert reply.choices[0].message.content == expected
    assert reply.usage.prompt_tokens == len(prompt)
