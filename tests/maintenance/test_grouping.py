"""One alert per machine problem, in plain words: grouping of findings (maintenance.problems
and the alert book), per-gateway clock skew, per-machine silence, the stopped-machine mode,
old state decoding, and the demo's faults through the anomaly and maintenance processors."""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from confluent_kafka import TopicPartition
from opentelemetry import trace
from replay_support import message, run

from anomaly.processor import AnomalyProcessor
from anomaly.simfeed import tag_maps, to_reading_batch
from maintenance.lifecycle import AlertBook, Policy
from maintenance.machine import MAX_SETTLE_US, MachineState, RuleSet, SensorReadings, state_codec
from maintenance.processor import MaintenanceProcessor
from maintenance.rules import ClockSkew, Finding, LimitRule, NoData, PersistentAnomaly
from maintenance.service import policy_from, rules_from
from plantstream.assets import AssetRegistry
from plantstream.avro import AvroCodec
from plantstream.gateway.simulator import Factory
from plantstream.settings import Settings
from plantstream.topics import ALERTS, ANOMALIES, READINGS_VALID, machine_key

S = 1_000_000
POLICY = Policy(quiet_s=3600, update_every_s=60, calm_s=900)
SPECS = {"vibration": {"unit": "mm/s", "warning_high": 4.5, "critical_high": 7.1,
                       "recommended_action": "Check alignment and bearings."},
         "bearing_temp": {"unit": "degC", "warning_high": 75.0, "critical_high": 95.0,
                          "recommended_action": "Check bearing lubrication."},
         "speed": {"unit": "rpm"}}
SCORE_WORDS = re.compile(r"score|threshold|anomalies within|e[+-]\d", re.IGNORECASE)


def batch(t_s: float, values: dict[str, float], gateway: str = "gw-1", skew_s: float = 0.0) -> SensorReadings:
    ts = int(t_s * S)
    return SensorReadings("t", "s", "m", gateway, ts, ts - int(skew_s * S), list(values), [ts] * len(values),
                          list(values.values()))


def anomaly(i: int, sensor: str, value: float, model: str = "ewzscore+mahalanobis",
            score: float = 3.0) -> dict:
    ts = i * 60 * S
    return {"event_id": f"m:{model}:{sensor}", "tenant": "t", "site": "s", "machine": "m", "ts": ts,
            "window_start": 1, "window_end": ts, "score": score, "threshold": 1.0, "kind": "multivariate",
            "model": model, "model_version": "1", "contributions": [{"sensor": sensor, "share": 0.9,
                                                                     "value": value}]}


def emitted(out: list) -> list[dict[str, Any]]:
    return [e.record for e in out]


def test_findings_of_one_fault_on_several_sensors_are_one_alert_with_a_likely_cause() -> None:
    book = AlertBook("t", "s", "m")
    out = book.apply(Finding("persistent_anomaly", "vibration", "warning", "Vibration unusual", 0,
                             {"value": 5.0, "normal_mean": 3.0, "normal_sd": 0.4}), 0, POLICY, "mm/s")
    out += book.apply(Finding("trend_to_limit", "bearing_temp", "warning",
                              "Bearing temperature rising 0.8 degC/h: critical limit 95 degC in about 6.0 h",
                              10 * S, {"slope_per_hour": 0.8, "value": 80.0, "limit": 95.0},
                              action="Check bearing lubrication."), 100 * S, POLICY, "degC")
    out += book.apply(Finding("limit", "vibration", "critical", "", 1500 * S,
                              {"value": 7.3, "limit": 7.1, "side": 1.0, "normal_mean": 3.0, "normal_sd": 0.4},
                              action="Check alignment and bearings."), 200 * S, POLICY, "mm/s")
    recs = emitted(out)
    assert len({r["alert_id"] for r in recs}) == 1 and len(book.alerts) == 1
    last = recs[-1]
    assert last["severity"] == "critical" and last["sensors"] == ["vibration", "bearing_temp"]
    assert last["title"] == ("Likely bearing wear: Vibration 7.3 mm/s, 2.4x its normal 3 ± 0.4 for 25 min; "
                             "critical limit 7.1 mm/s crossed (also: bearing temperature)")
    assert last["recommended_action"] == (
        "Likely cause: bearing wear (vibration and bearing temperature rising together). "
        "Check alignment and bearings. Check bearing lubrication.")
    assert last["evidence"]["value"] == 7.3 and last["evidence"]["bearing_temp.trend.slope_per_hour"] == 0.8
    assert [r["notify"] for r in [{"notify": e.notify} for e in out]][-1] == "severity_raised"


def test_clock_skew_is_one_alert_per_gateway_with_its_sensors() -> None:
    state, rules = MachineState("t", "s", "m", 0), RuleSet()
    out = []
    for b in range(10):
        out += state.on_readings(batch(1000 + b, {"vibration": 3.0, "bearing_temp": 60.0, "speed": 1470.0},
                                       skew_s=-900), SPECS, rules, (1000 + b) * S, POLICY)
    recs = emitted(out)
    assert {r["alert_id"] for r in recs} == {"t/s/m/clock_skew/gw-1#1"}
    assert recs[0]["title"] == "Gateway gw-1 clock 15 min ahead of the platform clock"
    assert recs[0]["sensors"] == ["vibration", "bearing_temp", "speed"] and recs[0]["rule"] == "clock_skew"


def test_no_data_is_one_alert_per_machine_naming_the_silent_sensors() -> None:
    rules = RuleSet(reading_rules=(NoData(max_silence_s=60),), anomaly_rule=PersistentAnomaly())
    state = MachineState("t", "s", "m", 0)
    state.on_readings(batch(0, {"vibration": 3.0, "bearing_temp": 60.0, "speed": 1470.0}), SPECS, rules, S,
                      POLICY)
    state.on_readings(batch(50, {"speed": 1470.0}), SPECS, rules, 50 * S, POLICY)
    part = emitted(state.tick(100 * S, POLICY))
    assert [(r["rule"], r["sensors"], r["title"]) for r in part] == [
        ("no_data", ["vibration", "bearing_temp"],
         "No data from 2 of 3 sensors (vibration, bearing temperature) for 2 min")]
    everything = emitted(state.tick(200 * S, POLICY))  # now speed is silent too: the same alert
    assert [(r["alert_id"], r["revision"], r["sensors"]) for r in everything] == [
        (part[0]["alert_id"], 2, ["vibration", "bearing_temp", "speed"])]
    assert everything[0]["title"] == "No data from gateway gw-1: all 3 sensors silent for 2 min"


def test_a_sensor_the_dropout_detector_reported_silent_is_not_alerted_again_for_no_data() -> None:
    rules = RuleSet(reading_rules=(NoData(max_silence_s=60),), anomaly_rule=PersistentAnomaly())
    state = MachineState("t", "s", "m", 0)
    state.on_readings(batch(0, {"vibration": 3.0, "bearing_temp": 60.0, "speed": 1470.0}), SPECS, rules, S,
                      POLICY)
    out = []
    for i in range(1, 4):  # vibration stops; the anomaly service's dropout detector sees it first
        out += state.on_anomaly(anomaly(i, "vibration", 0.0, model="dropout"), rules, i * 60 * S, POLICY)
        out += state.on_readings(batch(i * 60, {"bearing_temp": 60.0, "speed": 1470.0}), SPECS, rules,
                                 i * 60 * S, POLICY)
    out += state.tick(200 * S, POLICY)  # vibration silent for 200 s: past the no-data limit
    recs = emitted(out)
    assert {r["alert_id"] for r in recs} == {"t/s/m/persistent_anomaly/vibration#1"}, recs
    alert = state.book.alerts[("sensor_fault", "vibration")]
    assert "no_data:*" in alert.contributions  # the no-data finding is its evidence, not a new alert
    assert alert.title == "Vibration: no readings for 3 min while the other sensors report"
    for t in (240, 300, 360, 390):  # now bearing temperature is silent too, with no sensor fault of its own
        out = state.on_readings(batch(t, {"speed": 1470.0}), SPECS, rules, t * S, POLICY)
    recs = emitted(out + state.tick(400 * S, POLICY))
    assert [(r["rule"], r["sensors"]) for r in recs if r["rule"] == "no_data"] == [
        ("no_data", ["vibration", "bearing_temp"])]  # a new problem: one no-data alert names both


def test_a_silent_sensor_and_the_anomalies_it_causes_are_one_warning() -> None:
    state, rules = MachineState("t", "s", "m", 0), RuleSet()
    out = []
    for i in range(3):
        out += state.on_anomaly(anomaly(i, "vibration", 0.0, model="dropout", score=5.0 + i), rules, i * S,
                                POLICY)
    for i in range(3, 6):
        out += state.on_anomaly(anomaly(i, "vibration", 0.0, score=50.0), rules, i * S, POLICY)
    recs = emitted(out)
    assert {r["alert_id"] for r in recs} == {"t/s/m/persistent_anomaly/vibration#1"}
    assert all(r["severity"] == "warning" for r in recs)  # a sensor fault; the detector cannot raise it
    assert recs[0]["title"] == "Vibration: no readings for 2 min while the other sensors report"
    assert recs[0]["recommended_action"] == "Check the sensor, its wiring and the gateway's input for it."


def running(rules: RuleSet) -> MachineState:
    """A machine that ran normally for 100 s (its normals are learned)."""
    state = MachineState("t", "s", "m", 0)
    for t in range(100):
        state.on_readings(batch(t, {"speed": 1470.0, "vibration": 3.0}), SPECS, rules, t * S, POLICY)
    return state


def speed_anomalies(state: MachineState, rules: RuleSet, t0: int) -> list[dict[str, Any]]:
    return emitted([e for i in range(3) for e in state.on_anomaly(
        anomaly(i, "speed", 0.0) | {"ts": (t0 + i) * S}, rules, (t0 + i) * S, POLICY)])


def test_a_stopped_machine_is_not_an_anomaly_but_a_limit_still_alerts() -> None:
    rules = RuleSet(reading_rules=(LimitRule(),), anomaly_rule=PersistentAnomaly())
    state = running(rules)
    for t in range(100, 105):  # five readings in a row at standstill: stopped
        state.on_readings(batch(t, {"speed": 0.0, "vibration": 0.1}), SPECS, rules, t * S, POLICY)
    assert speed_anomalies(state, rules, 105) == []
    hot = emitted(state.on_readings(batch(110, {"speed": 0.0, "vibration": 9.0}), SPECS, rules, 110 * S,
                                    POLICY))
    assert [(r["rule"], r["severity"]) for r in hot] == [("limit", "critical")]
    assert "Vibration 9 mm/s, 3.0x its normal 3 ± 0" in hot[0]["title"]  # the normal did not learn the stop


def test_one_low_speed_reading_is_a_spike_not_a_stop() -> None:
    rules = RuleSet(reading_rules=(LimitRule(),), anomaly_rule=PersistentAnomaly())
    state = running(rules)
    state.on_readings(batch(100, {"speed": 0.0, "vibration": 3.0}), SPECS, rules, 100 * S, POLICY)
    state.on_readings(batch(101, {"speed": 1470.0, "vibration": 3.0}), SPECS, rules, 101 * S, POLICY)
    assert [(r["rule"], r["sensors"]) for r in speed_anomalies(state, rules, 102)] == [
        ("persistent_anomaly", ["speed"])]


def test_state_written_before_grouping_still_decodes_and_continues() -> None:
    """A snapshot of the previous version: per-sensor clock-skew rules, no baselines, alerts
    keyed by (rule, sensor) without contributions. It decodes with defaults, its old alert
    keeps ticking (and auto-resolves), and new findings open grouped alerts."""
    state = MachineState("t", "s", "m", 3)
    state.reading_rules["vibration"] = [LimitRule(), ClockSkew()]
    old = AlertBook("t", "s", "m")
    tree = json.loads(state_codec().encode(state))
    for name in ("gateway_rules", "gateway_sensors", "baselines", "units", "stopped_until"):
        del tree["f"][name]
    tree["f"]["book"] = json.loads(state_codec().encode(old))
    book = AlertBook("t", "s", "m")
    book.apply(Finding("limit", "vibration", "warning", "vibration 5 mm/s above warning limit 4.5", 0,
                       {"value": 5.0, "limit": 4.5}), 0, POLICY)
    raw_alert = json.loads(state_codec().encode(book.alerts[("condition", "*")]))
    for name in ("problem", "contributions", "sensors"):
        del raw_alert["f"][name]
    raw_alert["f"]["title"] = "vibration 5 mm/s above warning limit 4.5"  # the old wording
    tree["f"]["book"]["f"]["alerts"] = {"$d": [[{"$t": ["limit", "vibration"]}, raw_alert]]}
    restored = state_codec().decode(json.dumps(tree).encode())
    assert isinstance(restored, MachineState) and restored.partition == 3
    assert [type(r).__name__ for r in restored.reading_rules["vibration"]] == ["LimitRule"]
    assert restored.baselines == {} and restored.gateway_rules == {} and restored.stopped_until == 0
    legacy = restored.book.alerts[("limit", "vibration")]
    assert legacy.record()["sensors"] == ["vibration"] and legacy.contributions == {}
    assert legacy.record()["title"] == "vibration 5 mm/s above warning limit 4.5"
    new = emitted(restored.on_readings(batch(10, {"vibration": 8.0}), SPECS, RuleSet(), 10 * S, POLICY))
    assert [(r["alert_id"], r["severity"]) for r in new] == [("t/s/m/limit/vibration#1", "critical")]
    gone = [(r["state"], r["title"]) for r in emitted(restored.tick(3601 * S, POLICY))]
    assert ("resolved", "vibration 5 mm/s above warning limit 4.5") in gone


# the demo: `make demo`'s factory (8 machines, seed 7, 3 random faults, 60 s at 4000 readings/s) -------
SETTINGS = replace(Settings(Path("/tmp"), "127.0.0.1:1", "chdb:///tmp/x", topic_prefix="g."), partitions=1)
CODEC = AvroCodec()


def demo_alerts(seed: int = 7, seconds: float = 60.0, rate: float = 4000.0) -> tuple[Factory, list[dict]]:
    """The demo's faults through the anomaly and maintenance processors in this process, paced
    as the demo paces them (factory time squeezed into ``seconds`` of input clock); the last
    revision of every alert after the throttled updates are flushed."""
    speedup = rate / Factory.build(machines=8, seed=seed).sensors
    horizon, wall0 = seconds * speedup, 1_790_000_000_000_000
    f = Factory.build(machines=8, seed=seed, faulty=3, horizon=horizon, interval=1.0, warm_start=True,
                      start_us=wall0 - int(horizon * S))
    registry, maps = AssetRegistry(f.assets()), tag_maps(f.assets())
    readings = []
    for b, due in f.timed_batches(horizon, batch_size=100):
        mid = (b["tenant"], b["site"], b["machine"])
        wall = wall0 + round(due / speedup * S)
        rec = to_reading_batch(b, maps[mid], wall + 20_000) | {
            "sent_at": wall + b["sent_at"] - (f.start_us + round(due * S))}
        if rec["readings"]:
            readings.append(message(READINGS_VALID.physical(SETTINGS), 0, len(readings), machine_key(*mid),
                                    CODEC.encode("reading_batch", rec), wall // 1000 + 30))
    batches = [readings[i:i + 20] for i in range(0, len(readings), 20)]
    events = run(lambda: AnomalyProcessor(SETTINGS, registry, trace.get_tracer("t")), batches).outputs
    pending = sorted((CODEC.decode(v, "anomaly_event")["ts"], k, v) for t, k, v in events
                     if t == ANOMALIES.physical(SETTINGS) and v)
    settings = Settings.from_env()
    proc = MaintenanceProcessor(SETTINGS, registry, trace.get_tracer("t"), rules=rules_from(settings),
                                policy=policy_from(settings))
    last: dict[str, dict] = {}
    offset, wall_ms = 0, 0
    for chunk in batches:
        wall_ms = max(m.timestamp()[1] for m in chunk)
        newest = max(r["ts"] for m in chunk for r in CODEC.decode(m.value(), "reading_batch")["readings"])
        extra = []
        while pending and pending[0][0] <= newest:  # events right after the readings that caused them
            _, key, value = pending.pop(0)
            extra.append(message(ANOMALIES.physical(SETTINGS), 0, offset, key, value, wall_ms + 5))
            offset += 1
        outs = proc.process([*chunk, *extra]) + proc.tick(wall_ms * 1000 + 1000)
        for store in proc.stores:
            store.changelog()
            store.committed()
        last |= {a["alert_id"]: a for a in (CODEC.decode(o.value, "alert_event") for o in outs
                                            if o.topic.endswith("alerts"))}
    flush = proc.tick(wall_ms * 1000 + 61 * S)
    last |= {a["alert_id"]: a for a in (CODEC.decode(o.value, "alert_event") for o in flush)}
    return f, list(last.values())


def test_the_demo_faults_give_one_plain_worded_alert_each_and_none_for_healthy_machines() -> None:
    factory, alerts = demo_alerts()
    faults = {w.machine: w.kind for w in factory.ground_truth()}
    assert len(faults) == 3
    per_machine = {m: [a for a in alerts if a["machine"] == m] for m in faults}
    for m, got in per_machine.items():
        print(f"\n{m} ({faults[m]}): {[a['title'] for a in got]}")
    assert all(len(got) == 1 for got in per_machine.values()), per_machine
    assert [a for a in alerts if a["machine"] not in faults] == []
    for a in alerts:
        assert a["state"] == "open" and not SCORE_WORDS.search(a["title"]), a["title"]
    by_kind = {faults[a["machine"]]: a for a in alerts}
    assert by_kind["bearing_wear"]["title"].startswith("Likely bearing wear: ")
    assert set(by_kind["bearing_wear"]["sensors"]) >= {"vibration", "bearing_temp"}
    assert by_kind["clock_skew"]["title"].startswith("Gateway gw-conveyor-01 clock 15 min ahead")
    assert "no readings" in by_kind["dropout"]["title"]


def test_a_rebaseline_event_is_a_note_on_the_condition_alert_not_another_anomaly() -> None:
    """The anomaly service re-baselined (the machine settled at a new level): the open condition
    alert says so, nothing is counted as an anomaly, and the alert resolves once quiet."""
    state, rules = MachineState("t", "s", "m", 0), RuleSet()
    state.units["discharge_pressure"] = "bar"
    out = []
    for i in range(4):
        out += state.on_anomaly(anomaly(i, "discharge_pressure", 6.1, score=1.5), rules, i * 60 * S, POLICY)
    opened = emitted(out)[-1]
    rebase = {**anomaly(5, "discharge_pressure", 6.12, score=4.6), "kind": "rebaseline",
              "event_id": "m:ewzscore+mahalanobis:rebaseline:300000000", "window_start": 300 * S}
    noted = emitted(state.on_anomaly(rebase, rules, 300 * S, POLICY))
    assert len(noted) == 1 and noted[0]["alert_id"] == opened["alert_id"]
    assert noted[0]["occurrences"] == opened["occurrences"]  # not counted as an anomaly
    assert noted[0]["note"] == ("operating point changed: the machine has settled at a new steady level "
                                "(discharge pressure 6.12 bar); the anomaly model now learns it as normal")
    assert noted[0]["state"] == "open" and not SCORE_WORDS.search(noted[0]["note"])
    resolved = emitted(state.tick(300 * S + int(POLICY.quiet_s * S), POLICY))
    assert resolved and resolved[-1]["state"] == "resolved"
    quiet = MachineState("t", "s", "m", 0)  # without an open alert there is nothing to say
    assert quiet.on_anomaly(rebase, rules, 300 * S, POLICY) == []


def test_a_temperature_still_warming_up_after_a_stop_is_not_an_anomaly_alert() -> None:
    """After a 5-min stop a bearing takes ~30 min to warm up again: its 'below normal' anomalies are
    the machine settling, not a fault, for as long as it is still below its normal band (at most
    MAX_SETTLE_US after the stop). Anomalies of another sensor (a hot motor) still alert, and so
    does the bearing once it is back in its band."""
    specs = {**SPECS, "motor_temp": {"unit": "degC"}}
    rules = RuleSet(reading_rules=(LimitRule(),), anomaly_rule=PersistentAnomaly())
    state = MachineState("t", "s", "m", 0)
    for t in range(0, 3600, 5):  # an hour of normal running: the normals are learned
        state.on_readings(batch(t, {"speed": 1470.0, "bearing_temp": 48.0 + 0.3 * ((t // 5) % 3 - 1),
                                    "motor_temp": 60.0}), specs, rules, t * S, POLICY)
    for t in range(3600, 3900, 5):  # a 5-min stop: the bearing cools
        state.on_readings(batch(t, {"speed": 0.0, "bearing_temp": 40.0, "motor_temp": 55.0}), specs, rules,
                          t * S, POLICY)

    def warming(t: int) -> float:
        return 48.0 - 8.0 * math.exp(-(t - 3900) / 600)  # back within 2 sd of normal after ~28 min

    def events(sensor: str, value: float, t0: int) -> list[dict[str, Any]]:
        out = []
        for i in range(4):
            t = t0 + 60 * i
            state.on_readings(batch(t, {"speed": 1470.0, "bearing_temp": warming(t), "motor_temp": 60.0}),
                              specs, rules, t * S, POLICY)
            event = anomaly(0, sensor, value) | {"ts": t * S, "event_id": f"{sensor}{t0}"}
            out += emitted(state.on_anomaly(event, rules, t * S, POLICY))
        return out

    for t in range(3900, 4800, 5):  # 15 min after the restart the bearing is still 1.8 degC cold
        state.on_readings(batch(t, {"speed": 1470.0, "bearing_temp": warming(t), "motor_temp": 60.0}), specs,
                          rules, t * S, POLICY)
    assert events("bearing_temp", 46.0, 4800) == []  # settling: no alert
    hot = events("motor_temp", 75.0, 5100)
    assert [r["sensors"] for r in hot][:1] == [["motor_temp"]]  # another sensor's anomaly still alerts
    for t in range(5340, 7800, 5):  # warm again, and 5 more minutes
        state.on_readings(batch(t, {"speed": 1470.0, "bearing_temp": warming(t), "motor_temp": 60.0}), specs,
                          rules, t * S, POLICY)
    later = events("bearing_temp", 44.0, 7800)
    assert later and "bearing_temp" in later[-1]["sensors"]  # a cold bearing now is news


def test_settling_after_a_stop_ends_at_the_cap_even_if_a_temperature_stays_cold() -> None:
    rules = RuleSet(reading_rules=(LimitRule(),), anomaly_rule=PersistentAnomaly())
    state = MachineState("t", "s", "m", 0)
    for t in range(0, 3600, 5):
        state.on_readings(batch(t, {"speed": 1470.0, "bearing_temp": 48.0 + 0.3 * ((t // 5) % 3 - 1)}), SPECS,
                          rules, t * S, POLICY)
    for t in range(3600, 3900, 5):
        state.on_readings(batch(t, {"speed": 0.0, "bearing_temp": 40.0}), SPECS, rules, t * S, POLICY)
    end = 3900 + MAX_SETTLE_US // S
    for t in range(3900, end + 120, 5):  # it never warms up (a heater, a sensor off its mount)
        state.on_readings(batch(t, {"speed": 1470.0, "bearing_temp": 40.0}), SPECS, rules, t * S, POLICY)
    assert state.warming["bearing_temp"] <= (3600 + 300 - 5) * S + MAX_SETTLE_US
    got = []
    for i in range(4):
        t = end + 120 + 60 * i
        event = anomaly(0, "bearing_temp", 40.0) | {"ts": t * S}
        got += emitted(state.on_anomaly(event, rules, t * S, POLICY))
    assert got and got[-1]["sensors"] == ["bearing_temp"]


def test_a_silence_while_maintenance_was_not_running_is_not_a_no_data_alert() -> None:
    """The platform was stopped for an hour (``make down``, an upgrade): maintenance comes back
    with the machines' states and a last reading an hour old. The silence it did not hear is
    not held against the gateways; one that begins after it started listening still is."""
    f = Factory.build(machines=1, seed=3, horizon=60.0, interval=5.0, warm_start=True,
                      start_us=1_790_000_000_000_000)
    registry, maps = AssetRegistry(f.assets()), tag_maps(f.assets())
    now_ms = int(time.time() * 1000)
    hour_ago = now_ms - 3_600_000
    topic = READINGS_VALID.physical(SETTINGS)
    msgs = []
    for b, _ in f.timed_batches(60.0, batch_size=100):
        mid = (b["tenant"], b["site"], b["machine"])
        rec = to_reading_batch(b, maps[mid], hour_ago * 1000)
        value = CODEC.encode("reading_batch", rec)
        msgs.append(message(topic, 0, len(msgs), machine_key(*mid), value, hour_ago))

    def no_data(outs: list) -> list[dict]:
        alerts = [CODEC.decode(o.value, "alert_event") for o in outs if o.topic == ALERTS.physical(SETTINGS)]
        return [a for a in alerts if a["rule"] == "no_data"]

    before = MaintenanceProcessor(SETTINGS, registry, trace.get_tracer("t"))  # no assignment: wall clock
    before.process(msgs)
    assert no_data(before.tick(now_ms * 1000))  # the behaviour being fixed: an hour of "silence"
    proc = MaintenanceProcessor(SETTINGS, registry, trace.get_tracer("t"))
    proc.assigned([TopicPartition(topic, 0)])
    proc.process(msgs)
    assert no_data(proc.tick(now_ms * 1000 + 60_000_000)) == []
    later = no_data(proc.tick(now_ms * 1000 + 16 * 60_000_000))  # silent since it started listening
    assert later and "silent for 16 min" in later[0]["title"]
