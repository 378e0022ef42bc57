"""A load-test kit for any OpenAI-compatible server (`chatworks bench load`): GuideLLM's modes,
vLLM's measures, bounded in requests and time.

    workload.py  what is sent: chat, streamed chat, /v1/ask, embeddings, ingestion, a mix
    schedule.py  when: synchronous, concurrent, constant rate, Poisson, sweep
    client.py    sending one request and timing it (TTFT, chunk gaps, tokens, status)
    runner.py    a bounded run, and a sweep of runs
    report.py    percentiles, goodput under an SLO, errors by status; JSON, Markdown, plot
"""
