"""Evals: golden datasets, metrics and suite runs, so `make test` fails when grounded answering
or the model gets worse.

- What is asked: `datasets` (format, loading, gold matching), `suites` (named sets with their
  corpus and thresholds, `suites.toml`), `scaffold` (a new set to fill in).
- Asking: `ask` (in process, as `chatworks ask`), `client` (a running server over HTTP),
  `questions` (each question asked, scored and appended, resumable), `runner` (retrieval-only
  and in-process answer evals), `suite_run` (one suite end to end).
- Scoring: `metrics` (pure functions), `judge` (an optional LLM judge and its agreement with
  human labels), `probes` (model probes as a pass rate), `calibrate` (fitting the
  answerability model).
- Reporting: `report` (JSON and Markdown, threshold checks), `html`, `plots`.
"""
