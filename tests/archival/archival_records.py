"""Records of every archived kind, built as the upstream services would write them."""

from __future__ import annotations

import time
from typing import Any

from plantstream.avro import AvroCodec
from plantstream.kafka import Output
from plantstream.settings import Settings
from plantstream.topics import (
    ALERTS,
    ANOMALIES,
    NOTIFICATIONS,
    READINGS_REJECTED,
    READINGS_VALID,
    machine_key,
)

NOW_US = time.time_ns() // 1000
codec = AvroCodec()


def reading_batch(machine: str, i: int, n: int = 20, ingest_time: int = NOW_US,
                  tenant: str = "acme") -> dict[str, Any]:
    return {"batch_id": f"{machine}-b{i}", "tenant": tenant, "site": "s1", "machine": machine,
            "gateway": "gw1", "ingest_time": ingest_time,
            "readings": [{"reading_id": f"{machine}-b{i}:{k}", "sensor": f"sensor{k % 4}",
                          "ts": NOW_US - 7_200_000_000 + i * 1_000_000 + k * 1000,
                          "value": (i * 7 + k * 13) % 97 / 3.0, "unit": "degC", "quality": 192}
                         for k in range(n)]}


def dead_letter(i: int) -> dict[str, Any]:
    return {"id": f"validation:{i}", "tenant": "acme", "site": "s1", "machine": f"m{i % 5}",
            "stage": "validation", "reason": "value_out_of_range" if i % 2 else "future_timestamp",
            "detail": "test", "sensor": "sensor0", "ts": NOW_US if i % 3 else 99_999_999_999_999_999,
            "value": 1e9, "source_topic": "readings.normalized", "source_partition": i % 4,
            "source_offset": i, "original": b"\x00\x01raw", "truncated": False, "content_type": None,
            "rejected_at": NOW_US}


def anomaly(i: int) -> dict[str, Any]:
    return {"event_id": f"anom-{i}", "tenant": "acme", "site": "s1", "machine": f"m{i % 5}",
            "ts": NOW_US - i * 1_000_000, "window_start": NOW_US - i * 1_000_000 - 60_000_000,
            "window_end": NOW_US - i * 1_000_000, "score": 2.0 + i / 10, "threshold": 1.5,
            "kind": "multivariate", "model": "hst", "model_version": "1",
            "contributions": [{"sensor": "sensor1", "share": 0.75, "value": 3.5},
                              {"sensor": "sensor2", "share": 0.25, "value": None}]}


def alert(i: int, revision: int) -> dict[str, Any]:
    state = ("open", "acknowledged", "resolved")[revision - 1]
    return {"alert_id": f"alert-{i}", "revision": revision, "tenant": "acme", "site": "s1",
            "machine": f"m{i % 5}", "sensors": ["sensor1"], "rule": "limit",
            "severity": "critical" if i % 2 else "warning", "state": state, "title": "too hot",
            "first_seen": NOW_US - 3_600_000_000, "last_seen": NOW_US, "occurrences": revision,
            "escalation_level": 0, "evidence": {"value": 90.5, "limit": 80.0},
            "recommended_action": "check cooling", "actor": "ann" if revision > 1 else None,
            "note": None, "silenced_until": None,
            "updated_at": NOW_US - 3_600_000_000 + (revision - 1) * 600_000_000}


def notification(i: int) -> dict[str, Any]:
    return {"attempt_id": f"alert-{i}:1:webhook:1", "alert_id": f"alert-{i}", "revision": 1,
            "tenant": "acme", "site": "s1", "machine": f"m{i % 5}", "channel": "webhook",
            "target": "http://example.invalid/hook", "attempt": 1, "outcome": "delivered",
            "detail": "200", "escalation_level": 0, "attempted_at": NOW_US}


def key(machine: str) -> bytes:
    return machine_key("acme", "s1", machine)


def pipeline_outputs(settings: Settings, batches: int,
                     machines: int = 20) -> tuple[list[Output], dict[str, set]]:
    """Records of every archived topic, and the ids each table must end up holding."""
    outs: list[Output] = []
    expect: dict[str, set] = {"readings": set(), "rejected": set(), "anomalies": set(),
                              "alerts": set(), "notifications": set()}
    valid = READINGS_VALID.physical(settings)
    for i in range(batches):
        m = f"m{i % machines}"
        rec = reading_batch(m, i)
        outs.append(Output(valid, key(m), codec.encode("reading_batch", rec)))
        expect["readings"].update(r["reading_id"] for r in rec["readings"])
    for i in range(30):
        outs.append(Output(READINGS_REJECTED.physical(settings), key(f"m{i % 5}"),
                           codec.encode("dead_letter", dead_letter(i))))
        expect["rejected"].add(f"validation:{i}")
    for i in range(20):
        outs.append(Output(ANOMALIES.physical(settings), key(f"m{i % 5}"),
                           codec.encode("anomaly_event", anomaly(i))))
        expect["anomalies"].add(f"anom-{i}")
    for i in range(10):
        for rev in (1, 2, 3):
            outs.append(Output(ALERTS.physical(settings), key(f"m{i % 5}"),
                               codec.encode("alert_event", alert(i, rev))))
            expect["alerts"].add((f"alert-{i}", rev))
        outs.append(Output(NOTIFICATIONS.physical(settings), f"alert-{i}".encode(),
                           codec.encode("notification_attempt", notification(i))))
        expect["notifications"].add(f"alert-{i}:1:webhook:1")
    return outs, expect
