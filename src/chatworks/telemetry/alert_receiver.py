"""A webhook receiver for Alertmanager: every alert it is sent, firing or resolved, becomes one
JSON line on stdout. It is the receiver of `make run-observed`, of the compose stack and of
tests/e2e/test_alerting.py, so the whole path rule -> Prometheus -> Alertmanager -> someone can
be watched on one machine; in production, route to e-mail, Slack or PagerDuty instead
(deploy/alertmanager/, docs/operations/alerting.md).

Covers: Alertmanager's webhook payload (version 4), one line per alert with its status, labels,
annotations, times and when it was received. Does not cover: authentication or retries
(Alertmanager retries a notification that did not get a 2xx).
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO


def alert_records(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per alert in an Alertmanager webhook notification, stamped with when it
    arrived (UTC), so a log of them gives the time from firing to notification."""
    received_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return [
        {
            "status": alert.get("status", payload.get("status")),
            "alertname": alert.get("labels", {}).get("alertname"),
            "labels": alert.get("labels", {}),
            "annotations": alert.get("annotations", {}),
            "starts_at": alert.get("startsAt"),
            "ends_at": alert.get("endsAt"),
            "receiver": payload.get("receiver"),
            "received_at": received_at,
        }
        for alert in payload.get("alerts", [])
    ]


def make_server(host: str, port: int, out: TextIO = sys.stdout) -> ThreadingHTTPServer:
    """An HTTP server that writes the alerts POSTed to it to `out` (any path is accepted)."""
    lock = threading.Lock()  # one line at a time, whatever the number of handler threads

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # the name http.server dispatches to
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                records = alert_records(json.loads(body))
            except (ValueError, AttributeError, TypeError):
                self.send_response(400)  # not a webhook payload: say so, write nothing
                self.end_headers()
                return
            with lock:
                for record in records:
                    out.write(json.dumps(record, sort_keys=True) + "\n")
                out.flush()
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the alert lines are the output, not one access line per POST."""

    return ThreadingHTTPServer((host, port), Handler)
