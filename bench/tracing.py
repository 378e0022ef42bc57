"""What tracing costs per request: the same request through a server with tracing off, with
every request traced and exported over OTLP/HTTP, and with 10% of traces sampled.

    .venv/bin/python bench/tracing.py [--requests 400]

Each configuration is a real server with the scripted provider (no model, no delay), so the
time is the HTTP path and its spans. The exporter sends to a real OTLP/HTTP receiver in this
process (tests/otlp_receiver.py), batched as in production. Non-streaming chat completions go to
the servers in turn, one at a time (round-robin, so other load weighs on all alike); reported
are the p50 and mean latency and the overhead against tracing off, measured in this same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.limits import measure, report
from tests.otlp_receiver import start_receiver
from tests.servers import LiveServer, start_server


def start(name: str, data: Path, **env: str) -> LiveServer:
    script = data / "script.json"
    script.write_text(json.dumps({"rules": []}))
    return start_server(f"bench-{name}", {
        "CHATWORKS_DATA_DIR": str(data / name), "CHATWORKS_PROVIDER": "scripted",
        "CHATWORKS_SCRIPT_PATH": str(script), **env,
    })  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    n = parser.parse_args().requests
    receiver = start_receiver()
    otlp = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    with contextlib.ExitStack() as stack:
        data = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        configurations = {
            "tracing off": ("off", {}),
            "every trace, OTLP/HTTP": ("all", otlp),
            "10% sampled, OTLP/HTTP": ("ratio", otlp | {
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "0.1"}),
        }  # fmt: skip
        targets = {}
        for label, (name, env) in configurations.items():
            targets[label] = start(name, data, **env)
            stack.callback(targets[label].stop)
        results = measure({label: (server, None) for label, server in targets.items()}, n)
        time.sleep(1)  # the last batch
    receiver.server.shutdown()
    print(f"{n} non-streaming chat completions per configuration, round-robin (scripted provider)")
    print(f"spans received: {len(receiver.spans)}")
    report(results, "tracing off")


if __name__ == "__main__":
    main()
