"""Single-record latency of a registered lab model: in this process (the model's own
`predict_proba`, the baseline) and through HTTP (`POST /v1/classify` on a real server: auth
off, limits, metrics, the registry lookup cached), measured in the same run, one request at a
time, interleaved.

    .venv/bin/python bench/classify.py --store mlruns --model bbc-news --csv bbc-news.csv \
        [--requests 300]

Records are the CSV's texts (or rows), cycled. Prints p50/p95 for both and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from chatworks.evals.metrics import percentile
from chatworks.lab.serving import ClassifierStore
from tests.servers import start_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=Path("mlruns"))
    parser.add_argument("--model", default="bbc-news")
    parser.add_argument("--csv", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    import pandas as pd

    store = ClassifierStore(args.store.resolve(), "champion")
    served = store.get(args.model)
    frame = pd.read_csv(args.csv)
    columns = served.classifier.columns
    if columns.text:
        records = frame[columns.text[0]].astype(str).tolist()
    else:
        records = json.loads(frame.drop(columns=[served.classifier.manifest["target"]])
                             .to_json(orient="records"))  # fmt: skip
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; model {args.model} v{served.version} "
          f"({served.classifier.manifest['method']})")  # fmt: skip
    with tempfile.TemporaryDirectory() as data:
        script = Path(data) / "script.json"
        script.write_text('{"rules": []}')
        server = start_server("bench-classify", {
            "CHATWORKS_DATA_DIR": data, "CHATWORKS_PROVIDER": "scripted",
            "CHATWORKS_SCRIPT_PATH": str(script), "CHATWORKS_LAB_STORE": str(args.store.resolve()),
        })  # fmt: skip
        try:
            local, http = [], []
            with httpx.Client(timeout=60) as client:
                url = f"{server.api_url}/classify"
                for i in range(args.requests + 5):
                    record = records[i % len(records)]
                    started = time.perf_counter()
                    served.classifier.predict_proba([record])
                    in_process = (time.perf_counter() - started) * 1000
                    started = time.perf_counter()
                    r = client.post(url, json={"model": args.model, "input": [record]})
                    over_http = (time.perf_counter() - started) * 1000
                    r.raise_for_status()
                    if i >= 5:  # the first requests load the model and warm caches
                        local.append(in_process)
                        http.append(over_http)
        finally:
            server.stop()
    print(f"{args.requests} single-record requests, one at a time")
    print("| path | p50 ms | p95 ms | mean ms |\n|---|---|---|---|")
    for name, values in (("in process (predict_proba)", local), ("HTTP POST /v1/classify", http)):
        print(f"| {name} | {percentile(values, 50):.2f} | {percentile(values, 95):.2f} | "
              f"{statistics.mean(values):.2f} |")  # fmt: skip
    print(f"HTTP / in-process p50: {percentile(http, 50) / percentile(local, 50):.2f}x")


if __name__ == "__main__":
    main()
