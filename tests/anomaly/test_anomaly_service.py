"""The shipped anomaly service (``anomaly.service.SERVICE``, what ``python -m anomaly`` runs)
in the test process against the real broker, each run until idle.

Two scenarios:

1. Synthetic machines: warm up on healthy data, stop, restart, inject a fault. Asserted: bad
   bytes are dead-lettered with their reason; snapshots reach the changelog; after the
   restart the service scores on without a new warm-up and emits exactly what a
   never-restarted detector emits (same event ids, same scores); the faulty machine's event
   names the faulty sensor within a bounded delay; healthy machines stay quiet.
2. The factory simulator (warm-ups, load cycles, breaks) with its default service settings
   and an injected overheating fault: the faulty machine gets a per-sensor (univariate)
   event naming the fault's sensor within a bounded delay, healthy machines produce few
   episodes, and the service emits exactly what the offline evaluation path computes.
"""

from __future__ import annotations

import math
from dataclasses import replace

from anomaly.config import detector_factory
from anomaly.service import SERVICE
from anomaly.simfeed import reading_batches
from anomaly.state import MachineState, restore
from anomaly.synthetic import T0_US, Fault, SyntheticMachine, asset_record, stream
from plantstream.assets import publish_assets
from plantstream.avro import AvroCodec
from plantstream.gateway.simulator import Factory
from plantstream.kafka import Output
from plantstream.lag import partition_lags
from plantstream.runner import StopFlag
from plantstream.settings import Settings
from plantstream.topics import ANOMALIES, ANOMALY_MODELS, READINGS_REJECTED, READINGS_VALID

from kafka_io import produce_all, read_all, read_topic

SENSORS = [f"s{i}" for i in range(8)]
WARMUP, FAULT_AT, PHASE1, TOTAL = 200, 600, 400, 900
MAX_DELAY_SAMPLES = 40  # measured: 10-15 samples (1 s each) for this fault size
SETTINGS = {"anomaly_warmup": WARMUP, "anomaly_update_seconds": 30.0, "anomaly_learn": "normal"}
codec = AvroCodec()


def machines() -> list[SyntheticMachine]:
    ms = [SyntheticMachine("acme", "plant1", f"m{k}", SENSORS, seed=k) for k in range(4)]
    ms[0].fault = Fault("s3", FAULT_AT)
    return ms


def outputs(settings: Settings, ms: list[SyntheticMachine], start: int, n: int) -> list[Output]:
    topic = READINGS_VALID.physical(settings)
    return [Output(topic, k, codec.encode("reading_batch", r)) for k, r in stream(ms, n, start=start)]


def run_service(settings: Settings, **tuning: object) -> None:
    """The shipped anomaly service (anomaly.service.SERVICE) with ``tuning`` (settings fields)
    in this process until it has read its input to the end; then its group must sit at the log end of
    every input partition."""
    tuned = replace(settings, **tuning)
    SERVICE.run(tuned, stop=StopFlag(), idle_exit_after=10, until_read_to_end=True)
    behind = [p for p in partition_lags(tuned, "anomaly") if p.committed != p.end]
    assert not behind, behind


def reference_events(settings: Settings, ms: list[SyntheticMachine]) -> dict[str, list[dict]]:
    """What a detector that never restarted emits for the same data."""
    make = detector_factory(replace(settings, anomaly_warmup=WARMUP, anomaly_learn="normal"))
    out: dict[str, list[dict]] = {}
    states = {m.machine: MachineState(("acme", "plant1", m.machine), make(sorted(SENSORS))) for m in ms}
    for st in states.values():
        st.rows.expected = frozenset(SENSORS)
    for _, rec in stream(machines(), TOTAL):
        rs = rec["readings"]
        evs = states[rec["machine"]].feed([r["sensor"] for r in rs], [r["ts"] for r in rs],
                                          [r["value"] for r in rs], [r["quality"] for r in rs], 30_000_000)
        out.setdefault(rec["machine"], []).extend(evs)
    return out


def test_fault_detected_and_state_survives_restart(settings: Settings) -> None:
    ms = machines()
    publish_assets(settings, [asset_record(m) for m in ms])
    garbage = Output(READINGS_VALID.physical(settings), b"acme/plant1/m9", b"not avro at all")
    produce_all(settings, [*outputs(settings, ms, 0, PHASE1), garbage])

    run_service(settings, **SETTINGS)
    snaps = {m.key(): m.value() for m in read_all(settings, ANOMALY_MODELS.physical(settings))}
    assert set(snaps) == {m.key for m in ms}
    for key, value in snaps.items():
        rec = codec.decode(value, "model_snapshot")
        assert rec["rows"] == PHASE1 and rec["last_ts"] == T0_US + (PHASE1 - 1) * 1_000_000, key

    dead = read_topic(settings, READINGS_REJECTED.physical(settings), until=lambda m: len(m) >= 1)
    dl = codec.decode(dead[0].value(), "dead_letter")
    assert (dl["reason"], dl["stage"], dl["original"]) == ("not_avro", "anomaly", b"not avro at all")

    # Restart mid-stream: what the restarted service loads scores on without a new warm-up.
    m0 = machines()[0]
    probe = detector_factory(settings)(None)  # the service's model name and version
    state = restore(codec, snaps[m0.key], probe.model_name, probe.model_version)
    assert state is not None and state.detector.n_rows == PHASE1
    never_restarted = detector_factory(replace(settings, anomaly_warmup=WARMUP))(sorted(SENSORS))
    batches = [rec for _, rec in stream([m0], TOTAL)]
    for rec in batches[:PHASE1 // 10]:
        never_restarted.process_many(_rows(rec["readings"]))
    rows = [row for rec in batches[PHASE1 // 10:PHASE1 // 10 + 5] for row in _rows(rec["readings"])]
    after_restart = state.detector.process_many(rows)
    reference = never_restarted.process_many(rows)
    assert not any(v.warming_up for v in after_restart)
    for a, b in zip(after_restart, reference, strict=True):
        assert math.isclose(a.score, b.score, rel_tol=1e-9, abs_tol=1e-12)

    produce_all(settings, outputs(settings, ms, PHASE1, TOTAL - PHASE1))
    run_service(settings, **SETTINGS)
    got = [codec.decode(m.value(), "anomaly_event")
           for m in read_all(settings, ANOMALIES.physical(settings))]
    expected = reference_events(settings, ms)
    by_machine: dict[str, list[dict]] = {}
    for e in got:
        by_machine.setdefault(e["machine"], []).append(e)
    assert set(by_machine) == {"m0"}, {k: len(v) for k, v in by_machine.items()}  # healthy: quiet
    assert [(e["event_id"], e["ts"]) for e in by_machine["m0"]] == \
        [(e["event_id"], e["ts"]) for e in expected["m0"]]
    for e, ref in zip(by_machine["m0"], expected["m0"], strict=True):
        assert math.isclose(e["score"], ref["score"], rel_tol=1e-9)
    first = by_machine["m0"][0]
    delay = (first["ts"] - T0_US) // 1_000_000 - FAULT_AT
    assert 0 <= delay <= MAX_DELAY_SAMPLES
    assert first["window_start"] == first["ts"] and first["contributions"][0]["sensor"] == "s3"
    assert first["score"] > first["threshold"] and first["model"] == "ewzscore+mahalanobis"
    assert all(e["event_id"] == first["event_id"] for e in by_machine["m0"])  # one episode, revisions


def _rows(readings: list[dict]) -> list[tuple[int, dict[str, float]]]:
    rows: dict[int, dict[str, float]] = {}
    for r in readings:
        rows.setdefault(r["ts"], {})[r["sensor"]] = r["value"]
    return sorted(rows.items())


# -- scenario 2: the factory simulator -------------------------------------------------------
SIM_SEED, SIM_HORIZON = 1, 6000.0
SIM_FAULT = "overheating:machine=cnc-01,start=4200,duration=1800"
# Measured (seeds 1-4, this scenario): the motor_temp drift event opens 270-360 s after the
# fault starts (cooling fails over its first 540 s); the machine model, seed 1: 181 s.
SIM_MAX_DELAY_S = 600
# Healthy machine time: the 3 healthy machines and the faulty one before its fault, ~6.2
# machine-hours. Measured: 0.17 false-alarm episodes per machine-hour (anomaly.simeval, held-out
# seeds 21-22, fixed threshold), here 2 (a conveyor break; the CNC's motor still warming up 53 min
# after its cold start); bound ~2.5x the mean rate.
SIM_MAX_HEALTHY_EPISODES = 3
SIM_UPDATE_S = 60


def sim_factory() -> Factory:
    return Factory.build(machines=4, seed=SIM_SEED, faults=[SIM_FAULT], horizon=SIM_HORIZON, start_us=T0_US)


def sim_offline_events(settings: Settings) -> dict[str, list[dict]]:
    """What the evaluation path (one MachineState per machine, the service's detector) emits."""
    factory = sim_factory()
    make = detector_factory(settings)
    states: dict[str, MachineState] = {}
    out: dict[str, list[dict]] = {}
    for a in factory.assets():
        sensors = sorted(s["sensor"] for s in a["sensors"])
        st = states[a["machine"]] = MachineState((a["tenant"], a["site"], a["machine"]), make(sensors))
        st.rows.expected = frozenset(sensors)
    for _, rec in reading_batches(factory, until=SIM_HORIZON):
        rs = rec["readings"]
        out.setdefault(rec["machine"], []).extend(states[rec["machine"]].feed(
            [r["sensor"] for r in rs], [r["ts"] for r in rs], [r["value"] for r in rs],
            [r["quality"] for r in rs], SIM_UPDATE_S * 1_000_000))
    return out


def test_simulator_fault_detected_healthy_machines_quiet(settings: Settings) -> None:
    factory = sim_factory()
    publish_assets(settings, factory.assets())
    topic = READINGS_VALID.physical(settings)
    produce_all(settings, [Output(topic, k, codec.encode("reading_batch", rec))
                           for k, rec in reading_batches(factory, until=SIM_HORIZON)])
    run_service(settings, anomaly_update_seconds=float(SIM_UPDATE_S))
    got = [codec.decode(m.value(), "anomaly_event")
           for m in read_all(settings, ANOMALIES.physical(settings))]
    by_machine: dict[str, list[dict]] = {}
    for e in got:
        by_machine.setdefault(e["machine"], []).append(e)

    [truth] = factory.ground_truth()
    faulty = [e for e in by_machine.get(truth.machine, []) if e["window_start"] >= truth.start_us]
    before = {e["event_id"] for e in by_machine.get(truth.machine, []) if e["window_start"] < truth.start_us}
    first = faulty[0]
    delay_s = (first["window_start"] - truth.start_us) / 1e6
    assert 0 <= delay_s <= SIM_MAX_DELAY_S, delay_s
    assert first["contributions"][0]["sensor"] == "motor_temp" and first["score"] > first["threshold"]
    drift = next(e for e in faulty if e["kind"] == "univariate")  # the sensor's own channel names it too
    assert drift["model"] == "residualdrift"
    assert [c["sensor"] for c in drift["contributions"]] == ["motor_temp"]
    assert 0 <= (drift["window_start"] - truth.start_us) / 1e6 <= SIM_MAX_DELAY_S
    assert drift["contributions"][0]["sensor"] in truth.sensors

    healthy = {e["event_id"] for e in got if e["machine"] != truth.machine} | before
    assert len(healthy) <= SIM_MAX_HEALTHY_EPISODES, sorted(healthy)

    offline = sim_offline_events(settings)  # what is measured is what runs
    for machine, events in offline.items():
        assert [(e["event_id"], e["ts"]) for e in by_machine.get(machine, [])] == \
            [(e["event_id"], e["ts"]) for e in events], machine
