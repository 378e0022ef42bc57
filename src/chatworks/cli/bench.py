"""`chatworks bench load`: load-test a running OpenAI-compatible server (chatworks.loadtest)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import httpx
import typer

from chatworks.cli.shared import console

app = typer.Typer(help="Measure a running server under load.")


@app.command()
def load(
    url: Annotated[str, typer.Option(help="The server's base URL (…/v1 or its root).")] = (
        "http://127.0.0.1:8000/v1"
    ),
    scenario: Annotated[
        str, typer.Option(help="chat, stream, conversation, ask, embeddings, ingest or mix.")
    ] = "stream",
    mode: Annotated[
        str, typer.Option(help="synchronous, concurrent, constant, poisson or sweep.")
    ] = "synchronous",
    requests: Annotated[int, typer.Option(min=1, help="At most this many requests per run.")] = 50,
    seconds: Annotated[float, typer.Option(min=1, help="No request starts after this.")] = 60.0,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Clients (concurrent); most in flight (open loop, sweep).")
    ] = 8,
    rate: Annotated[float | None, typer.Option(help="Requests/s (constant, poisson).")] = None,
    points: Annotated[int, typer.Option(min=1, help="Constant rates a sweep tries.")] = 4,
    model: Annotated[str | None, typer.Option(help="Default: the server's first model.")] = None,
    max_tokens: Annotated[int, typer.Option(min=1)] = 64,
    temperature: Annotated[float, typer.Option(min=0)] = 0.0,
    prompt_words: Annotated[
        int, typer.Option(min=0, help="Random words before each prompt (no shared prefixes).")
    ] = 0,
    prompts: Annotated[
        Path | None, typer.Option(help="Prompts (or questions for ask), one per line.")
    ] = None,
    conversations: Annotated[
        int, typer.Option(min=1, help="conversation: how many are under way at once.")
    ] = 8,
    turns: Annotated[int, typer.Option(min=1, help="conversation: user turns in each.")] = 4,
    collection: Annotated[str, typer.Option(help="For ask and ingest.")] = "chatworks-docs",
    embedding_model: Annotated[str, typer.Option()] = "all-minilm-l6-v2",
    slo_ttft_ms: Annotated[float | None, typer.Option(help="Goodput: TTFT at most.")] = None,
    slo_tpot_ms: Annotated[float | None, typer.Option(help="Goodput: TPOT at most.")] = None,
    slo_e2e_ms: Annotated[float | None, typer.Option(help="Goodput: latency at most.")] = None,
    api_key: Annotated[
        str | None, typer.Option(help="Bearer key, when the server wants one.")
    ] = None,
    timeout: Annotated[float, typer.Option(min=1, help="One request's limit in seconds.")] = 120.0,
    use_cache: Annotated[
        bool, typer.Option(help="Let chatworks answer from its response cache.")
    ] = False,
    seed: int = 0,
    out: Annotated[
        Path | None, typer.Option(help="Report folder (default runs/load/TIME).")
    ] = None,
) -> None:
    """Send a bounded load and report TTFT, TPOT, ITL and latency percentiles, throughput,
    goodput and errors by status (JSON, Markdown, and a plot for a sweep)."""
    from chatworks.evals.client import api_base
    from chatworks.loadtest import report
    from chatworks.loadtest.runner import Bounds, Target, run_load, run_sweep
    from chatworks.loadtest.schedule import MODES, Load
    from chatworks.loadtest.workload import Workload, read_lines

    if mode not in MODES:
        raise typer.BadParameter(f"--mode must be one of {', '.join(MODES)}")
    if mode in ("constant", "poisson") and not rate:
        raise typer.BadParameter(f"--mode {mode} needs --rate")
    target = Target(api_base(url), api_key, timeout, use_cache)
    lines = (
        {"questions" if scenario == "ask" else "prompts": read_lines(prompts)} if prompts else {}
    )
    try:
        workload = Workload(
            scenario, model or _first_model(target), max_tokens=max_tokens,
            temperature=temperature, collection=collection, embedding_model=embedding_model,
            prompt_words=prompt_words, seed=seed, conversations=conversations, turns=turns,
            **lines,
        )  # fmt: skip
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    bounds, slo = Bounds(requests, seconds), report.SLO(slo_ttft_ms, slo_tpot_ms, slo_e2e_ms)

    def shown(run) -> None:
        console.print(report.one_line(report.summarize(run, slo)), highlight=False)

    if mode == "sweep":
        runs = asyncio.run(run_sweep(target, workload, concurrency, points, bounds, seed, shown))
    else:
        runs = [
            asyncio.run(run_load(target, workload, Load(mode, concurrency, rate), bounds, seed))
        ]
        shown(runs[0])
    summaries = [report.summarize(run, slo) for run in runs]
    title = f"{scenario} against {target.base_url} ({workload.model})"
    folder = out or Path("runs/load") / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    setup = {"url": target.base_url, "model": workload.model, "scenario": scenario,
             "mode": mode, "requests": requests, "seconds": seconds,
             "concurrency": concurrency, "rate": rate, "max_tokens": max_tokens,
             "temperature": temperature, "prompt_words": prompt_words, "seed": seed,
             "conversations": conversations, "turns": turns}  # fmt: skip
    written = report.write(runs, summaries, folder, title, setup)
    console.print(report.markdown(summaries, title), highlight=False, soft_wrap=True)
    console.print("wrote " + ", ".join(str(p) for p in written))


def _first_model(target) -> str:
    async def listed() -> list[dict]:
        async with target.client(1) as client:
            return (await client.get("models")).raise_for_status().json()["data"]

    try:
        models = asyncio.run(listed())
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        raise typer.BadParameter(f"cannot list the models at {target.base_url}: {exc}") from None
    if not models:
        raise typer.BadParameter(f"{target.base_url} serves no model; name one with --model")
    return models[0]["id"]
