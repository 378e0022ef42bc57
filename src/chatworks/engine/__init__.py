"""Inference: turning token ids into a safe text stream (and, later, the native engine)."""
