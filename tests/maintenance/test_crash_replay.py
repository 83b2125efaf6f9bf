"""After a crash, anomaly events and alert revisions are exactly those a never-crashed run
would have produced (deterministic given the input order).

The simulator's factory (one machine with a stuck sensor, one overheating) streams through
the anomaly processor, and its readings and anomaly events through the maintenance
processor, once without a crash and once crashing mid-batch several times (the new copy's
state comes only from the committed changelog records; see ``replay_support``). The
committed outputs must be byte for byte the same.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from opentelemetry import trace
from replay_support import Batch, message, run

from anomaly.processor import AnomalyProcessor
from anomaly.simfeed import reading_batches
from maintenance.lifecycle import Policy
from maintenance.processor import MaintenanceProcessor
from maintenance.service import rules_from
from plantstream.assets import AssetRegistry
from plantstream.avro import AvroCodec
from plantstream.gateway.simulator import Factory
from plantstream.settings import Settings
from plantstream.topics import ANOMALIES, READINGS_VALID

SETTINGS = replace(Settings(Path("/tmp"), "127.0.0.1:1", "chdb:///tmp/x", topic_prefix="r."),
                   anomaly_warmup=200, anomaly_learn="normal", partitions=2)
T0_US = 1_790_000_000_000_000
CODEC = AvroCodec()


def factory() -> Factory:
    return Factory.build(machines=3, seed=5, horizon=1500.0, start_us=T0_US, warm_start=True,
                         faults=["overheating:machine=cnc-01,start=600,duration=800",
                                 "stuck_sensor:machine=pump-01,start=500,duration=600"])


def readings_batches(f: Factory, per_batch: int = 3) -> list[Batch]:
    topic = READINGS_VALID.physical(SETTINGS)
    offsets = [0, 0]
    msgs = []
    for key, rec in reading_batches(f, until=1500.0):
        p = sum(key) % 2
        ts_ms = rec["readings"][-1]["ts"] // 1000
        msgs.append(message(topic, p, offsets[p], key, CODEC.encode("reading_batch", rec), ts_ms))
        offsets[p] += 1
    return [msgs[i:i + per_batch] for i in range(0, len(msgs), per_batch)]


def test_anomaly_events_after_crashes_equal_a_never_crashed_run() -> None:
    f = factory()
    registry = AssetRegistry(f.assets())
    batches = readings_batches(f)

    def make() -> AnomalyProcessor:
        return AnomalyProcessor(SETTINGS, registry, trace.get_tracer("test"))

    clean = run(make, batches, partitions=(0, 1))
    crashed = run(make, batches, crash_at={5, 40, 41, 90}, partitions=(0, 1))
    assert len(batches) > 95 and clean.outputs, "the scenario must produce anomaly events"
    assert crashed.outputs == clean.outputs
    machines = {CODEC.decode(v, "anomaly_event")["machine"] for _, _, v in clean.outputs if v}
    assert "pump-01" in machines  # the stuck sensor


def test_alert_revisions_after_crashes_equal_a_never_crashed_run() -> None:
    f = factory()
    registry = AssetRegistry(f.assets())
    readings = readings_batches(f)
    events = run(lambda: AnomalyProcessor(SETTINGS, registry, trace.get_tracer("test")), readings,
                 partitions=(0, 1)).outputs
    # Maintenance's input: each readings batch, then the anomaly events it caused, in order.
    topic = ANOMALIES.physical(SETTINGS)
    by_ts = sorted(((CODEC.decode(v, "anomaly_event")["ts"], k, v) for _, k, v in events if v),
                   key=lambda e: e[0])
    offsets = [0, 0]
    batches: list[Batch] = []
    for batch in readings:
        last_ts = max(m.timestamp()[1] for m in batch) * 1000
        extra = []
        while by_ts and by_ts[0][0] <= last_ts:
            ts, key, value = by_ts.pop(0)
            p = sum(key) % 2
            extra.append(message(topic, p, offsets[p], key, value, ts // 1000))
            offsets[p] += 1
        batches.append([*batch, *extra])

    def make() -> MaintenanceProcessor:
        return MaintenanceProcessor(SETTINGS, registry, trace.get_tracer("test"), rules=rules_from(SETTINGS),
                                    policy=Policy(quiet_s=3600, update_every_s=60))

    clean = run(make, batches, partitions=(0, 1))
    crashed = run(make, batches, crash_at={3, 30, 79, 80, 92}, partitions=(0, 1))  # alerts open at ~77
    alerts = [CODEC.decode(v, "alert_event") for t, _, v in clean.outputs if t.endswith("alerts")]
    assert alerts, "the scenario must raise alerts"
    assert crashed.outputs == clean.outputs
    revisions = [(a["alert_id"], a["revision"]) for a in alerts]
    assert len(revisions) == len(set(revisions))
