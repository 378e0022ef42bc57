"""Evals: golden datasets, retrieval and answer metrics, a runner over a collection, and reports
with thresholds, so `make test` can fail when grounded answering gets worse.

`datasets` (format, loading, gold matching), `metrics` (pure functions), `runner` (asks the
questions the way the product does), `report` (JSON + Markdown files, threshold checks).
"""
