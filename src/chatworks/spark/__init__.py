"""Spark jobs for what outgrows one machine: corpus preparation (`prep.py`) and bulk
embedding into Postgres + pgvector (`embed.py`, loaded by `load.py`).

Each job runs the same per-record functions as the local path (`training/corpus.py`,
`rag/ingest.py`) inside Spark tasks, so its output is the local path's output; only the
orchestration differs. Executors need chatworks installed and the input paths visible (a
shared filesystem on a cluster). Not covered: reading from object stores, Spark Connect.
"""
