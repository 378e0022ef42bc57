"""The alert receiver's lines say when each alert arrived (the timeline of a postmortem is read
from them: docs/operations/postmortems/)."""

from __future__ import annotations

from datetime import UTC, datetime

from chatworks.telemetry.alert_receiver import alert_records


def test_each_alert_is_stamped_with_its_arrival_in_utc():
    payload = {"receiver": "webhook", "status": "firing", "alerts": [
        {"labels": {"alertname": "A"}, "startsAt": "2026-12-06T02:57:56.569Z"},
        {"labels": {"alertname": "B"}, "status": "resolved"},
    ]}  # fmt: skip
    before = datetime.now(UTC)
    records = alert_records(payload)
    after = datetime.now(UTC)
    assert [(r["alertname"], r["status"]) for r in records] == [("A", "firing"), ("B", "resolved")]
    stamps = {r["received_at"] for r in records}
    assert len(stamps) == 1  # one notification, one arrival time
    (stamp,) = stamps
    assert stamp.endswith("Z")
    arrived = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= arrived <= after
