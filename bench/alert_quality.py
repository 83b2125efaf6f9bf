"""Alert quality on the simulator's ground truth: the shipped anomaly and maintenance
processors (the services' own factories and settings) run in this process over a simulated
factory day, and the alerts they raise are judged against the injected faults.

Figures (ISA-18.2 / EEMUA 191 style):
- faults alerted, alerts per alerted fault (one machine problem should be one alert);
- lead time: from a fault's first alert to the first reading past a critical limit on the
  fault's sensors (positive: the alert came first; faults that never reach a limit have none);
- false alerts per machine-day: alerts on healthy machines, or on a faulty one outside its
  fault window (an hour of slack after it, while the machine settles);
- chattering: a machine and rule raising 3 or more alerts within an hour;
- alert rate: alerts raised per 10 minutes per site (EEMUA 191: fewer than 1 on average),
  its peak, and the share of 10-minute windows above 1.

Nothing here is tuned: seeds are the benchmark's own (the demo and tests use others).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import TIMESTAMP_CREATE_TIME, Message
from opentelemetry import trace

from anomaly.processor import AnomalyProcessor
from anomaly.simfeed import tag_maps, to_reading_batch
from maintenance.processor import MaintenanceProcessor
from maintenance.service import policy_from, rules_from
from plantstream.assets import AssetRegistry
from plantstream.avro import AvroCodec
from plantstream.gateway.simulator import Factory
from plantstream.gateway.truth import FaultWindow
from plantstream.settings import Settings
from plantstream.topics import ALERTS, ANOMALIES, READINGS_VALID, machine_key

S = 1_000_000
SLACK_US = 3600 * S  # after a fault window, alerts still belong to it
CHATTER = (3, 3600 * S)  # this many alerts of one machine and rule within this long
CODEC = AvroCodec()


@dataclass
class Run:
    """One simulated factory run: its ground truth, every alert revision, first critical crossings."""

    factory: Factory
    hours: float
    revisions: list[dict[str, Any]] = field(default_factory=list)
    critical_at: dict[tuple[str, str], int] = field(default_factory=dict)  # (machine, sensor) -> us


def _message(topic: str, offset: int, key: bytes, value: bytes, ts_ms: int) -> Message:
    return Message(topic=topic, partition=0, offset=offset, key=key, value=value, headers=[],
                   timestamp=(TIMESTAMP_CREATE_TIME, ts_ms))


def _limits(assets: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[float | None, float | None]]:
    return {(a["machine"], s["sensor"]): (s["critical_low"], s["critical_high"])
            for a in assets for s in a["sensors"]}


def simulate(seed: int, machines: int, faulty: int, hours: float, interval: float,
             settings: Settings | None = None) -> Run:
    """The factory's readings through anomaly, then readings and anomaly events (in time order)
    through maintenance, ticking its timers as the service does."""
    settings = settings or Settings.from_env()
    horizon = hours * 3600
    f = Factory.build(machines=machines, seed=seed, faulty=faulty, horizon=horizon, interval=interval,
                      warm_start=True, start_us=1_790_000_000_000_000)
    assets = f.assets()
    registry, maps, limits = AssetRegistry(assets), tag_maps(assets), _limits(assets)
    run = Run(f, hours)
    topic = READINGS_VALID.physical(settings)
    readings: list[Message] = []
    for b, due in f.timed_batches(horizon, batch_size=100):
        mid = (b["tenant"], b["site"], b["machine"])
        ingest = f.start_us + round(due * S) + 20_000
        rec = to_reading_batch(b, maps[mid], ingest)
        if not rec["readings"]:
            continue
        for r in rec["readings"]:
            lo, hi = limits.get((b["machine"], r["sensor"]), (None, None))
            if (hi is not None and r["value"] >= hi) or (lo is not None and r["value"] <= lo):
                run.critical_at.setdefault((b["machine"], r["sensor"]), r["ts"])
        readings.append(_message(topic, len(readings), machine_key(*mid), CODEC.encode("reading_batch", rec),
                                 ingest // 1000))
    batches = [readings[i:i + 50] for i in range(0, len(readings), 50)]
    anomaly = AnomalyProcessor(settings, registry, trace.get_tracer("bench"))
    events: list[tuple[int, bytes, bytes]] = []
    for chunk in batches:
        for out in anomaly.process(chunk):
            if out.topic == ANOMALIES.physical(settings) and out.value:
                events.append((CODEC.decode(out.value, "anomaly_event")["ts"], out.key, out.value))
        for store in anomaly.stores:
            store.changelog()
            store.committed()
    events.sort()
    maint = MaintenanceProcessor(settings, registry, trace.get_tracer("bench"), rules=rules_from(settings),
                                 policy=policy_from(settings))
    alerts_topic, offset, wall_ms = ALERTS.physical(settings), 0, 0
    for chunk in batches:
        wall_ms = max(m.timestamp()[1] for m in chunk)
        extra = []
        while events and events[0][0] <= wall_ms * 1000:
            _, key, value = events.pop(0)
            extra.append(_message(ANOMALIES.physical(settings), offset, key, value, wall_ms + 5))
            offset += 1
        outs = maint.process([*chunk, *extra]) + maint.tick(wall_ms * 1000 + 1000)
        for store in maint.stores:
            store.changelog()
            store.committed()
        run.revisions += [CODEC.decode(o.value, "alert_event") for o in outs if o.topic == alerts_topic]
    run.revisions += [CODEC.decode(o.value, "alert_event") for o in maint.tick(wall_ms * 1000 + 61 * S)
                      if o.topic == alerts_topic]
    return run


def _window_of(alert: dict[str, Any], windows: list[FaultWindow]) -> FaultWindow | None:
    for w in windows:
        seen = alert["first_seen"]  # event time: the gateway's clock
        if w.kind == "clock_skew":  # a skewed gateway stamps its readings off the true clock
            seen -= round(w.params.get("offset", 0.0) * S)
        if w.machine == alert["machine"] and w.start_us - 600 * S <= seen <= w.end_us + SLACK_US:
            return w
    return None


def judge(run: Run) -> dict[str, Any]:
    """The figures of one run (see the module docstring)."""
    windows = run.factory.ground_truth()
    first: dict[str, dict[str, Any]] = {}
    for rev in run.revisions:
        first.setdefault(rev["alert_id"], rev)
    alerts = sorted(first.values(), key=lambda a: a["first_seen"])
    per_fault: dict[int, list[dict[str, Any]]] = defaultdict(list)
    false = []
    for a in alerts:
        w = _window_of(a, windows)
        (per_fault[windows.index(w)] if w is not None else false).append(a)
    leads = []
    for i, got in per_fault.items():
        w = windows[i]
        crossings = [run.critical_at[(w.machine, s)] for s in w.sensors
                     if (w.machine, s) in run.critical_at and run.critical_at[(w.machine, s)] >= w.start_us]
        if crossings:
            leads.append((min(crossings) - got[0]["first_seen"]) / 60 / S)
    by_rule: dict[tuple[str, str], list[int]] = defaultdict(list)
    for a in alerts:
        by_rule[(a["machine"], a["rule"])].append(a["first_seen"])
    n, span = CHATTER
    chattering = sum(1 for ts in by_rule.values() if any(ts[k + n - 1] - ts[k] <= span
                                                        for k in range(len(ts) - n + 1)))
    windows_10m = max(1, int(run.hours * 6))
    counts = [0] * windows_10m
    start = run.factory.start_us
    for a in alerts:
        k = int((a["first_seen"] - start) // (600 * S))
        if 0 <= k < windows_10m:
            counts[k] += 1
    sites = len({m.site for m in run.factory.machines})
    machine_days = len(run.factory.machines) * run.hours / 24
    return {
        "faults": len(windows), "faults_alerted": len(per_fault),
        "fault_kinds": sorted(w.kind for w in windows),
        "alerts": len(alerts), "alerts_per_alerted_fault": round(
            sum(len(v) for v in per_fault.values()) / len(per_fault), 2) if per_fault else None,
        "lead_time_min": [round(x, 1) for x in leads],
        "false_alerts": len(false), "false_alerts_per_machine_day": round(len(false) / machine_days, 3),
        "false_alert_titles": [a["title"] for a in false][:10],
        "chattering": chattering,
        "alerts_per_10min_per_site": round(len(alerts) / windows_10m / sites, 3),
        "peak_alerts_per_10min": max(counts),
        "share_10min_over_1": round(sum(c > 1 for c in counts) / windows_10m, 4),
    }
