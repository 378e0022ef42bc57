"""Telemetry: the one place that knows log fields, metric names and labels."""
