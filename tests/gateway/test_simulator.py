"""The simulated factory: reproducible by seed, physically sane, faults visible where and when
the ground truth says, and an asset registry that matches what the gateways send."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from plantstream.assets import load_assets_file
from plantstream.gateway.contract import decode_gateway_message, encode_gateway_batch
from plantstream.gateway.errors import GatewayError
from plantstream.gateway.faults import FaultSpec
from plantstream.gateway.simulator import Factory
from plantstream.gateway.truth import load_ground_truth, write_ground_truth
from plantstream.settings import REPO_ROOT

START = 1_777_636_800_000_000
TO_CANONICAL = {"degF": lambda v: (v - 32.0) / 1.8, "psi": lambda v: v / 14.503773773}


def series(factory: Factory, until: float, batch_size: int = 100) -> dict[tuple[str, str], np.ndarray]:
    """(machine, sensor) -> array of (ts_us, value in the canonical unit), via the registry."""
    registry = {r["machine"]: {s["tag"]: s for s in r["sensors"]} for r in factory.assets(0)}
    out: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for b in factory.batches(until, batch_size):
        for r in b["readings"]:
            sensor = registry[b["machine"]][r["tag"]]
            unit = r["unit"] or sensor["gateway_unit"] or sensor["unit"]
            value = TO_CANONICAL[unit](r["value"]) if unit in TO_CANONICAL else r["value"]
            out[(b["machine"], sensor["sensor"])].append((r["ts"], value))
    return {k: np.array(v) for k, v in out.items()}


def limits(factory: Factory, machine: str, sensor: str) -> dict:
    rec = next(r for r in factory.assets(0) if r["machine"] == machine)
    return next(s for s in rec["sensors"] if s["sensor"] == sensor)


def test_same_seed_same_batches_other_seed_other_values() -> None:
    a = list(Factory.build(6, seed=1, start_us=START, faulty=2, horizon=600).batches(batch_size=64))
    b = list(Factory.build(6, seed=1, start_us=START, faulty=2, horizon=600).batches(batch_size=64))
    c = list(Factory.build(6, seed=2, start_us=START, faulty=2, horizon=600).batches(batch_size=64))
    assert a == b
    assert [r["value"] for r in a[5]["readings"]] != [r["value"] for r in c[5]["readings"]]


def test_batches_hold_whole_ticks_in_time_order_and_round_trip_the_contract() -> None:
    f = Factory.build(8, seed=3, start_us=START, horizon=120)
    batches = list(f.batches(batch_size=50))
    per_machine: dict[str, list[dict]] = defaultdict(list)
    for b in batches:
        per_machine[b["machine"]].append(b)
        n_sensors = len(f.machine(b["machine"]).mtype.sensors)
        assert len(b["readings"]) <= 50 and len(b["readings"]) % n_sensors == 0
        for fmt in ("avro", "json"):
            assert decode_gateway_message(*encode_gateway_batch(b, fmt)) == b
    assert len(per_machine) == 8
    for bs in per_machine.values():
        stamps = [r["ts"] for b in bs for r in b["readings"]]
        assert stamps == sorted(stamps) and stamps[0] == START
        assert stamps[-1] == START + 119_000_000
        assert [b["sequence"] for b in bs] == list(range(len(bs)))
        assert all(b["sent_at"] > b["readings"][-1]["ts"] for b in bs)
    assert len({b["batch_id"] for b in batches}) == len(batches)
    sent = [b["sent_at"] for b in batches]
    assert sent == sorted(sent)  # machines interleave by the time each batch is complete


def test_healthy_machines_stay_within_warning_limits_and_warm_up() -> None:
    f = Factory.build(8, seed=5, start_us=START, horizon=7200)
    data = series(f, 7200)
    for (machine, sensor), arr in data.items():
        lim = limits(f, machine, sensor)
        values = arr[:, 1]
        assert lim["min_valid"] <= values.min() and values.max() <= lim["max_valid"], (machine, sensor)
        if lim["warning_high"] is not None:
            assert np.mean(values > lim["warning_high"]) < 0.01, (machine, sensor)
        if lim["warning_low"] is not None:
            assert np.mean(values < lim["warning_low"]) < 0.01, (machine, sensor)
    motor = data[("pump-01", "motor_temp")][:, 1]
    assert motor[:10].mean() < 30 and motor[-600:].mean() > motor[:10].mean() + 15  # warm-up after start
    load_current = data[("compressor-01", "current")][:, 1]
    assert load_current.max() > 1.6 * load_current[600:].min()  # load/unload cycles


def _first_sustained(ts: np.ndarray, values: np.ndarray, limit: float, n: int = 30) -> int | None:
    """Time the n-sample rolling median first exceeds the limit."""
    med = np.array([np.median(values[i:i + n]) for i in range(len(values) - n)])
    over = np.nonzero(med > limit)[0]
    return int(ts[over[0] + n - 1]) if over.size else None


def test_bearing_wear_raises_vibration_and_bearing_temperature_warning_before_critical() -> None:
    f = Factory.build(5, seed=7, start_us=START, horizon=4200,
                      faults=["bearing_wear:machine=pump-01,start=600,duration=3600"])
    data = series(f, 4200)
    (window,) = f.ground_truth()
    assert (window.start_us, window.end_us) == (START + 600_000_000, START + 4_200_000_000)
    assert window.sensors == ("vibration", "bearing_temp")
    for sensor in ("vibration", "bearing_temp"):
        arr = data[("pump-01", sensor)]
        ts, values = arr[:, 0], arr[:, 1]
        lim = limits(f, "pump-01", sensor)
        before = values[(ts >= START + 300e6) & (ts < START + 600e6)]
        late = values[(ts >= START + 3900e6) & (ts < START + 4200e6)]
        assert late.mean() > before.mean() + 0.5 * (lim["critical_high"] - before.mean()), sensor
        warn = _first_sustained(ts, values, lim["warning_high"])
        crit = _first_sustained(ts, values, lim["critical_high"])
        assert warn is not None and crit is not None, sensor
        assert window.start_us < warn < crit < window.end_us, sensor
        healthy = data[("pump-02", sensor)][:, 1]  # the other pump (imperial gateway, converted)
        assert healthy.max() < lim["warning_high"], sensor


def test_overheating_cavitation_and_recovery() -> None:
    f = Factory.build(5, seed=11, start_us=START, horizon=6000,
                      faults=["overheating:machine=cnc-01,start=600,duration=2400",
                              "cavitation:machine=pump-02,start=1200,duration=600"])
    data = series(f, 6000)
    motor = data[("cnc-01", "motor_temp")]
    lim = limits(f, "cnc-01", "motor_temp")
    during = motor[(motor[:, 0] >= START + 2000e6) & (motor[:, 0] < START + 3000e6), 1]
    after = motor[motor[:, 0] >= START + 5400e6, 1]
    assert during.max() > lim["critical_high"] and after.max() < lim["warning_high"]
    pressure, vib = data[("pump-02", "discharge_pressure")], data[("pump-02", "vibration")]
    in_cav = (pressure[:, 0] >= START + 1260e6) & (pressure[:, 0] < START + 1800e6)
    before = (pressure[:, 0] >= START + 600e6) & (pressure[:, 0] < START + 1200e6)
    assert pressure[in_cav, 1].mean() < 0.6 * pressure[before, 1].mean()
    assert pressure[in_cav, 1].mean() < limits(f, "pump-02", "discharge_pressure")["warning_low"]
    assert vib[in_cav, 1].std() > 3 * vib[before, 1].std()


def test_signal_faults_stuck_dropout_spikes_and_clock_skew() -> None:
    f = Factory.build(4, seed=13, start_us=START, horizon=900, faults=[
        "stuck_sensor:machine=compressor-01,sensor=pressure,start=100,duration=200",
        "dropout:machine=conveyor-01,sensor=current,start=300,duration=100",
        "spikes:machine=cnc-01,sensor=vibration,start=0,duration=450,rate=0.1",
        "clock_skew:machine=pump-01,start=500,duration=100,offset=-90"])
    tags: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for b in f.batches(batch_size=70):
        for r in b["readings"]:
            tags[(b["machine"], r["tag"])].append((r["ts"], r["value"]))
    stuck = np.array(tags[("compressor-01", "K01.PT")])
    inside = (stuck[:, 0] >= START + 100e6) & (stuck[:, 0] < START + 300e6)
    assert len(set(stuck[inside, 1])) == 1 and len(set(stuck[~inside, 1])) > 100
    dropped = np.array(tags[("conveyor-01", "M01.CUR")])[:, 0]
    assert not ((dropped >= START + 300e6) & (dropped < START + 400e6)).any()
    assert len(dropped) == 900 - 100 and len(tags[("conveyor-01", "M01.VIB")]) == 900
    spikes = np.array(tags[("cnc-01", "C01.VIB")])
    big = np.abs(spikes[:, 1]) > 5.0
    assert 20 < big[:450].sum() < 90 and not big[450:].any()
    skewed = np.array(tags[("pump-01", "P01.VIB")])[:, 0]
    expected = START + np.arange(900) * 1_000_000
    shift = (skewed - expected) / 1e6
    assert set(shift[500:600]) == {-90.0} and set(shift[:500]) == {0.0} and set(shift[600:]) == {0.0}


def test_ground_truth_files_in_json_and_csv(tmp_path: Path) -> None:
    f = Factory.build(8, seed=21, start_us=START, horizon=3600, faulty=5,
                      faults=["spikes:machine=pump-02,sensor=flow,start=10,duration=20,rate=0.5"])
    truth = f.ground_truth()
    assert len(truth) == 6 and len({w.machine for w in truth}) >= 5
    for w in truth:
        assert START <= w.start_us < w.end_us and w.sensors
    spike = next(w for w in truth if w.machine == "pump-02" and w.kind == "spikes"
                 and w.start_us == START + 10_000_000)
    assert spike.end_us == START + 30_000_000 and spike.sensors == ("flow",) and spike.params == {"rate": 0.5}
    for name in ("truth.json", "truth.csv"):
        write_ground_truth(tmp_path / name, truth, {"seed": 21})
        assert load_ground_truth(tmp_path / name) == truth
    first = (tmp_path / "truth.csv").read_text().splitlines()[1].split(",")
    assert first[:4] == [truth[0].tenant, truth[0].site, truth[0].machine, truth[0].kind]


def test_assets_match_what_is_sent_and_the_example_registry_matches_the_defaults() -> None:
    f = Factory.build(start_us=START, horizon=60)
    records = f.assets(now_us=1)
    by_machine = {r["machine"]: {s["tag"]: s for s in r["sensors"]} for r in records}
    seen_units = set()
    for b in f.batches():
        for r in b["readings"]:
            sensor = by_machine[b["machine"]][r["tag"]]
            if r["unit"] is not None:
                assert r["unit"] == (sensor["gateway_unit"] or sensor["unit"])
            seen_units.add(r["unit"] or sensor["gateway_unit"])
    assert {"degF", "psi", None, "degC"} <= seen_units
    example = load_assets_file(REPO_ROOT / "deploy" / "local" / "assets.yaml")
    for r in example:
        r["updated_at"] = 1
    assert example == records
    assert {r["machine_type"] for r in records} == {"pump", "cnc_spindle", "compressor", "conveyor_motor"}


def test_paced_rate_sets_the_interval_and_due_times() -> None:
    f = Factory.build(4, seed=1, rate=2600.0, horizon=2.0, start_us=START)
    assert f.readings_per_second() == pytest.approx(2600.0, rel=1e-3)
    timed = list(f.timed_batches(batch_size=100))
    readings = sum(len(b["readings"]) for b, _ in timed)
    dues = [d for _, d in timed]
    assert readings == pytest.approx(5200, rel=0.02)
    assert dues == sorted(dues) and 1.9 < dues[-1] < 2.1


@pytest.mark.parametrize(("spec", "message"), [
    ("melting:machine=pump-01", "unknown kind"),
    ("dropout:machine=pump-01,colour=red", "expected key=value"),
    ("dropout:machine=pump-01,start=soon", "not a number"),
    ("spikes:machine=pump-01,rate=2", "rate is a share"),
    ("dropout:machine=pump-09", "does not exist"),
    ("cavitation:machine=cnc-01", "needs a discharge_pressure sensor"),
    ("stuck_sensor:machine=pump-01,sensor=colour", "has no sensor 'colour'"),
])
def test_bad_fault_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(GatewayError, match=message):
        Factory.build(4, seed=0, faults=[spec])


def test_fault_spec_parsing() -> None:
    spec = FaultSpec.parse("clock_skew:machine=demo/plant-1/pump-01,start=5,duration=7.5,offset=-3")
    assert spec == FaultSpec("clock_skew", "demo/plant-1/pump-01", 5.0, 7.5, offset=-3.0)


def test_warm_start_begins_in_steady_operation_cold_start_switches_on() -> None:
    """A window cut from a running factory (warm) against machines switched on at the start
    (cold): warm readings sit within the warning limits from the first sample on and show
    no warm-up; cold pumps start below their flow and pressure limits and warm up."""
    warm_f = Factory.build(8, seed=5, start_us=START, horizon=1800, warm_start=True)
    warm = series(warm_f, 1800)
    cold_f = Factory.build(8, seed=5, start_us=START, horizon=1800)
    cold = series(cold_f, 1800)
    for (machine, sensor), arr in warm.items():
        lim, first = limits(warm_f, machine, sensor), arr[:30, 1]
        if lim["warning_low"] is not None:
            assert first.min() > lim["warning_low"], (machine, sensor)
        if lim["warning_high"] is not None:
            assert first.max() < lim["warning_high"], (machine, sensor)
    motor = warm[("pump-01", "motor_temp")][:, 1]
    assert motor[:10].mean() > 45 and abs(motor[-600:].mean() - motor[:10].mean()) < 8
    assert cold[("pump-01", "motor_temp")][:10, 1].mean() < 30
    for sensor in ("flow", "discharge_pressure"):
        assert cold[("pump-01", sensor)][0, 1] < limits(cold_f, "pump-01", sensor)["warning_low"]
    a = list(Factory.build(4, seed=1, start_us=START, horizon=60, warm_start=True).batches())
    assert a == list(Factory.build(4, seed=1, start_us=START, horizon=60, warm_start=True).batches())


def test_demo_pacing_stamps_sent_at_on_the_wall_clock_keeping_the_gateway_clock_offset() -> None:
    """The demo squeezes factory hours into minutes; its gateways still send now, with the
    simulated clock_skew fault's offset on top."""
    import time

    from plantstream.demo import sent_on_wall_clock

    f = Factory.build(1, seed=3, machine_types=["pump"], start_us=START, horizon=600, warm_start=True,
                      faults=["clock_skew:machine=pump-01,start=200,duration=200,offset=-500"])
    before = time.time_ns() // 1000
    paced = list(sent_on_wall_clock(f.timed_batches(600, 70), f.start_us, speedup=60.0))
    after = time.time_ns() // 1000
    assert len(paced) == 60
    for b, due in paced:
        last_tick = START + (10 * b["sequence"] + 9) * 1_000_000
        offset = -500_000_000 if 200e6 <= last_tick - START < 400e6 else 0
        assert due == pytest.approx((last_tick - START + 50_000) / 1e6 / 60.0)
        wall = b["sent_at"] - offset
        assert before + due * 1e6 - 1 <= wall <= after + due * 1e6 + 1
