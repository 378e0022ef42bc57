"""Inference on chatworks' own model: the continuous-batching scheduler with its KV cache and
prefix cache, sampling, constrained decoding, serving precisions, compiled decode steps, and
turning token ids into a safe text stream. Does not cover: prompts, chat templates or HTTP
(`providers/native.py` and the API)."""
